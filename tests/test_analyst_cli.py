"""``civic-vault`` (the analysts' commands) against the real server on 127.0.0.1
(``tests/analyst_support.py``): ``query`` from flags and from a file with ``--json``, progress on
stderr, ``--output``; ``preview``, ``releases``, ``budget``, ``datasets``; credentials from the
environment, flags or the demo file; refusals with the server's code; ``seed-demo``; and the
installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from clients.python.cli import main
from tests.aggregation_support import DISTRICTS
from tests.analyst_support import PURPOSE, READINGS, LiveCity, shared_city

pytestmark = pytest.mark.http

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def city() -> LiveCity:
    return shared_city()


@pytest.fixture
def env(city: LiveCity) -> dict[str, str]:
    client_id, secret = city.service()
    return {"CIVIC_URL": city.base, "CIVIC_CLIENT_ID": client_id, "CIVIC_CLIENT_SECRET": secret}


def run(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], *argv: str
) -> tuple[int, str, str]:
    code = main(list(argv), environ=env)
    out, err = capsys.readouterr()
    return code, out, err


def test_query_from_flags_with_json(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], city: LiveCity
) -> None:
    code, out, err = run(
        capsys, env, "query", "--json", "--dataset", "energy.consumption", "--purpose", PURPOSE,
        "--stat", "count", "--stat", "mean:kwh", "--group-by", "district", "--epsilon", "8",
        "--max-records-per-citizen", str(READINGS),
    )  # fmt: skip
    assert code == 0, err
    release = json.loads(out)
    assert release["status"] == "released" and release["epsilon_spent"] == 8.0
    assert release["statistics"] == ["count", "mean(kwh)"]
    assert [r["group"]["district"] for r in release["rows"]] == list(DISTRICTS)
    for row in release["rows"]:
        count = row["values"]["count"]
        assert count["lower"] <= count["value"] <= count["upper"]
        half = (count["upper"] - count["lower"]) / 2
        # within 4 half-widths of the truth: a Laplace draw is further about once in 160,000
        assert abs(count["value"] - city.truth[row["group"]["district"]]) <= 4 * half
    assert "running the query on energy.consumption" in err and "done in" in err  # progress


def test_query_from_a_file_writes_csv_and_prints_a_table(
    capsys: pytest.CaptureFixture[str], env: dict[str, str], tmp_path: Path
) -> None:
    spec = tmp_path / "query.json"
    spec.write_text(json.dumps({
        "purpose": PURPOSE, "dataset": "energy.consumption",
        "select": [{"stat": "histogram", "field": "kwh", "edges": [0, 10, 50]}],
        "group_by": ["district"], "epsilon": 1.0,
    }))  # fmt: skip
    out_csv = tmp_path / "result.csv"
    code, out, err = run(capsys, env, "query", str(spec), "--epsilon", "2", "-o", str(out_csv))
    assert code == 0, err
    assert "epsilon spent 2" in out and "public record: http://127.0.0.1:" in out
    assert "histogram(kwh)" in out and "[10, 50]" in out
    frame = pl.read_csv(out_csv)
    assert frame.columns == ["district", "statistic", "bin", "value", "lower", "upper", "note"]
    assert frame.height == len(DISTRICTS) * 2


def test_preview_budget_releases_and_datasets(
    capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    code, out, _ = run(capsys, env, "budget", "--json")
    assert code == 0
    before = json.loads(out)
    assert before["department"] == "energy" and before["epsilon_limit"] == 1000

    code, out, _ = run(
        capsys, env, "preview", "--json", "--dataset", "energy.consumption", "--purpose", PURPOSE,
        "--stat", "sum:kwh", "--epsilon", "1",
    )  # fmt: skip
    assert code == 0
    preview = json.loads(out)
    assert preview["spends"] == 0.0 and preview["accuracy"][0]["statistic"] == "sum(kwh)"
    code, out, _ = run(capsys, env, "budget", "--json")
    assert json.loads(out)["epsilon_spent"] == before["epsilon_spent"]

    # A release of its own, so that the listing below does not depend on other tests.
    code, out, err = run(
        capsys, env, "query", "--json", "--dataset", "energy.consumption", "--purpose", PURPOSE,
        "--stat", "count", "--epsilon", "1",
    )  # fmt: skip
    assert code == 0, err
    own = json.loads(out)["release_id"]
    code, out, _ = run(capsys, env, "releases", "--json", "--limit", "3")
    assert code == 0
    releases = json.loads(out)["releases"]
    assert own in {r["release_id"] for r in releases}  # the newest come first
    assert {r["department"] for r in releases} == {"energy"}
    code, out, _ = run(capsys, env, "release", "--json", own)
    assert code == 0 and json.loads(out)["release_id"] == own

    code, out, _ = run(capsys, env, "datasets")
    assert code == 0
    assert "energy.consumption: Electricity use" in out and "field kwh kWh, 0 to 50" in out


def test_refusals_carry_the_servers_code(
    capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    code, out, err = run(
        capsys, env, "query", "--json", "--dataset", "energy.consumption", "--purpose", PURPOSE,
        "--stat", "sum:watts", "--epsilon", "1",
    )  # fmt: skip
    assert code == 1
    error = json.loads(out)["error"]
    assert error["status"] == 422 and error["code"] == "query_invalid"
    assert error["details"][0]["field"] == "select[0].field"
    assert "query_invalid" in err and "select[0].field" in err

    code, _, err = run(capsys, env, "query", "--dataset", "energy.consumption", "--epsilon", "1")
    assert code == 2 and "--purpose, --stat" in err
    code, _, err = run(capsys, {"CIVIC_URL": env["CIVIC_URL"]}, "budget")
    assert code == 2 and "no credentials" in err
    wrong = {**env, "CIVIC_CLIENT_SECRET": "wrong"}
    code, _, err = run(capsys, wrong, "budget")
    assert code == 1 and "invalid_client" in err


def test_demo_credentials_file_and_a_given_token(
    capsys: pytest.CaptureFixture[str], city: LiveCity
) -> None:
    base = {"CIVIC_URL": city.base}
    code, out, err = run(
        capsys, base, "--demo-credentials", str(city.credentials_file), "budget", "--json",
        "--department", "mobility",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["department"] == "mobility"
    from clients.python import CivicClient

    client_id, secret = city.service()
    token = CivicClient(city.base, client_id=client_id, client_secret=secret).authenticate()
    code, out, err = run(capsys, {**base, "CIVIC_TOKEN": token}, "budget", "--json")
    assert code == 0, err
    assert json.loads(out)["department"] == "energy"


def test_the_installed_console_script(city: LiveCity) -> None:
    client_id, secret = city.service()
    script = Path(sys.executable).parent / "civic-vault"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "clients.python.cli"]
    result = subprocess.run(  # noqa: S603
        [*command, "query", "--json", "--quiet", "--dataset", "energy.consumption",
         "--purpose", PURPOSE, "--stat", "count", "--epsilon", "1"],
        env={**os.environ, "CIVIC_URL": city.base, "CIVIC_CLIENT_ID": client_id,
             "CIVIC_CLIENT_SECRET": secret, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"][0]["values"]["count"]["value"] is not None
    assert result.stderr == ""  # --quiet


def test_seed_demo_seeds_a_city_through_the_servers_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    environ: dict[str, Any] = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CIVIC_")},
        "CIVIC_KDF_PROFILE": "min",
        "PYTHONPATH": str(REPO),
    }
    code, out, err = run(
        capsys, environ, "seed-demo", "--citizens", "3", "--data-dir", str(data_dir), "--json"
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["credentials"] == str(data_dir / "demo-credentials.json")
    assert [d["service_client_id"] for d in summary["departments"]] == [
        "dept-energy", "dept-mobility", "dept-environment",
    ]  # fmt: skip
    credentials = json.loads((data_dir / "demo-credentials.json").read_text())
    assert credentials["departments"][0]["service_client"]["client_secret"]
    assert "client_secret" not in out  # secrets stay in the file
