"""The mobility example app (see the package docstring). Steps, as an outside developer writes them:

1. read the server's metadata (RFC 8414) and check its ``issuer``;
2. if a saved refresh token works, refresh (the server rotates it: save the new one);
3. otherwise start a tiny web server on a loopback port for the redirect (RFC 8252), send the
   citizen's browser to the authorization endpoint with PKCE (S256), ``state`` and
   ``authorization_details`` of type ``civic-vault:consent`` (append to ``mobility.trip``), receive
   the code, check ``state`` and ``iss`` (RFC 9207), and exchange the code with the verifier;
4. create a ``mobility.trip`` stream in the citizen's vault (first time only) and upload trips;
5. save the refresh token and the stream id (mode 0600) for next time.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import secrets
import sys
import threading
import warnings
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

DEFAULT_CLIENT_ID = "mobility-example"  # registered by the demo city (a public client)
DETAILS = [
    {
        "type": "civic-vault:consent",
        "stream_types": ["mobility.trip"],
        "actions": ["append"],
        "purpose": "trip-diary",
    }
]
MODES = ("walk", "bike", "bus", "metro", "car")


class AppError(RuntimeError):
    """Something the user should read: what went wrong and what to do."""


@dataclass
class Config:
    server: str
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str | None = None
    port: int = 8765
    state_file: Path = Path("mobility-app-state.json")
    trips: int = 3
    timeout: float = 300.0


@dataclass
class Report:
    how: str  # "browser" or "refresh"
    stream_id: str
    uploaded: int
    scope: str
    authorization_details: list[dict[str, Any]] = field(default_factory=list)


class _Callback(http.server.BaseHTTPRequestHandler):
    """Receives the one redirect from the authorization server."""

    received: list[str]
    done: threading.Event

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/callback":
            self.send_error(404)
            return
        self.received.append(self.path)
        self.done.set()
        body = b"<!doctype html><title>Done</title><p>Done. You can close this window."
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def _oauth_client(config: Config, redirect_uri: str) -> Any:
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import OAuth2Client

    return OAuth2Client(
        client_id=config.client_id,
        client_secret=config.client_secret,
        token_endpoint_auth_method="client_secret_basic" if config.client_secret else "none",
        scope="vault:append",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=30.0,
    )


def _metadata(config: Config) -> dict[str, Any]:
    url = config.server.rstrip("/") + "/.well-known/oauth-authorization-server"
    try:
        meta: dict[str, Any] = httpx.get(url, timeout=10).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise AppError(f"cannot read {url}: is the server running? ({exc})") from exc
    if meta.get("issuer") != config.server.rstrip("/"):
        raise AppError(f"the server calls itself {meta.get('issuer')!r}, not {config.server!r}")
    if "S256" not in meta.get("code_challenge_methods_supported", []):
        raise AppError("the server does not support PKCE with S256")
    return meta


def _load_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(path: Path, data: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    os.chmod(path, 0o600)


def _browser_flow(
    config: Config, meta: dict[str, Any], open_url: Callable[[str], None]
) -> dict[str, Any]:
    received: list[str] = []
    done = threading.Event()
    handler = type("Handler", (_Callback,), {"received": received, "done": done})
    try:
        server = http.server.HTTPServer(("127.0.0.1", config.port), handler)
    except OSError as exc:
        raise AppError(f"cannot listen on 127.0.0.1:{config.port} ({exc}); try --port") from exc
    redirect_uri = f"http://127.0.0.1:{config.port}/callback"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = _oauth_client(config, redirect_uri)
        verifier = secrets.token_urlsafe(48)
        url, state = client.create_authorization_url(
            meta["authorization_endpoint"],
            code_verifier=verifier,
            authorization_details=json.dumps(DETAILS),
        )
        open_url(url)
        if not done.wait(config.timeout):
            raise AppError("no answer from the browser in time; run again")
        callback = f"http://127.0.0.1:{config.port}{received[0]}"
        params = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
        if params.get("state") != state:
            raise AppError("the answer does not belong to this sign-in (state mismatch)")
        if params.get("iss") != meta["issuer"]:
            raise AppError("the answer came from another server (iss mismatch, RFC 9207)")
        if "error" in params:
            raise AppError(
                f"not authorized: {params['error']} {params.get('error_description', '')}"
            )
        token: dict[str, Any] = client.fetch_token(
            meta["token_endpoint"], authorization_response=callback, code_verifier=verifier
        )
        return dict(token)
    finally:
        server.shutdown()
        server.server_close()


def _refresh(config: Config, meta: dict[str, Any], refresh_token: str) -> dict[str, Any] | None:
    client = _oauth_client(config, f"http://127.0.0.1:{config.port}/callback")
    try:
        token = client.refresh_token(meta["token_endpoint"], refresh_token=refresh_token)
    except Exception:
        return None
    return dict(token)


def make_trips(count: int, now: datetime | None = None) -> list[dict[str, Any]]:
    moment = (now or datetime.now(UTC)).replace(microsecond=0)
    trips = []
    for i in range(count):
        mode = random.choice(MODES)
        km = round(random.uniform(0.5, 12.0), 1)
        trips.append(
            {
                "ts": (moment - timedelta(hours=3 * (count - i)))
                .isoformat()
                .replace("+00:00", "Z"),
                "mode": mode,
                "km": km,
                "minutes": max(1, round(km * 4)),
            }
        )
    return trips


def _upload(config: Config, token: dict[str, Any], stream_id: str | None) -> tuple[str, int]:
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    base = config.server.rstrip("/")
    with httpx.Client(base_url=base, headers=headers, timeout=30) as api:

        def create() -> str:
            r = api.post(
                "/v1/me/streams",
                json={
                    "stream_type": "mobility.trip",
                    "label": "Trips from the mobility example app",
                },
            )
            if r.status_code != 201:
                raise AppError(f"could not create the trip stream: {r.status_code} {r.text}")
            return str(r.json()["id"])

        stream_id = stream_id or create()
        trips = make_trips(config.trips)
        r = api.post(f"/v1/me/streams/{stream_id}/records", json=trips)
        if r.status_code == 404:  # another citizen connected this time, or the stream is gone
            stream_id = create()
            r = api.post(f"/v1/me/streams/{stream_id}/records", json=trips)
        if r.status_code != 201:
            raise AppError(f"could not upload trips: {r.status_code} {r.text}")
        return stream_id, int(r.json()["count"])


def run(config: Config, open_url: Callable[[str], None]) -> Report:
    """The whole app, once; ``open_url`` shows the authorization URL to the citizen."""
    meta = _metadata(config)
    state = _load_state(config.state_file)
    how = "refresh"
    token = _refresh(config, meta, state["refresh_token"]) if state.get("refresh_token") else None
    if token is None:
        how = "browser"
        token = _browser_flow(config, meta, open_url)
    state.update({"client_id": config.client_id, "refresh_token": token.get("refresh_token")})
    _save_state(config.state_file, state)  # the old refresh token is dead now: keep the new one
    stream_id, count = _upload(config, token, state.get("stream_id"))
    state["stream_id"] = stream_id
    _save_state(config.state_file, state)
    return Report(
        how,
        stream_id,
        count,
        str(token.get("scope", "")),
        list(token.get("authorization_details", [])),
    )


def _open_in_browser(url: str) -> None:
    print(f"Open this address in your browser to connect the app:\n\n  {url}\n", flush=True)
    webbrowser.open(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.examples.mobility_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="Civic Vault base URL")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=None, help="only for a confidential client")
    parser.add_argument("--port", type=int, default=8765, help="loopback port for the redirect")
    parser.add_argument("--state-file", type=Path, default=Path("mobility-app-state.json"))
    parser.add_argument("--trips", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true", help="print the address only")
    args = parser.parse_args(argv)
    config = Config(
        args.server, args.client_id, args.client_secret, args.port, args.state_file, args.trips
    )
    opener = (
        (lambda url: print(f"Open this address in your browser:\n\n  {url}\n", flush=True))
        if args.no_browser
        else _open_in_browser
    )
    try:
        report = run(config, opener)
    except AppError as exc:
        print(f"mobility app: {exc}", file=sys.stderr)
        return 1
    print(f"Connected ({report.how}); scope {report.scope!r}.")
    print(f"Uploaded {report.uploaded} trips to stream {report.stream_id}.")
    print(f"State saved in {config.state_file} (keep it private: it holds a refresh token).")
    return 0
