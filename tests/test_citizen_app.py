"""The citizen app (``clients/citizen_app``, mounted at ``/app``) as a backend-for-frontend:
cookies, CSRF, tokens kept on the server, the OAuth sign-in, and each page's work against the
vault's API. In-process (TestClient); the real browser runs in ``tests/browser/``."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_citizen_app_support import (
    ISSUER,
    PASSPHRASE,
    Browser,
    browser,
    citizen_settings,
    query,
)

from vault.settings import Settings


@pytest.fixture
def settings_(tmp_path: Path) -> Settings:
    return citizen_settings(tmp_path)


@pytest.fixture
def web(settings_: Settings) -> Any:
    with browser(settings_) as b:
        yield b


@pytest.fixture
def maria(web: Browser) -> Browser:
    web.register_and_sign_in("maria.lopez")
    return web


def api(b: Browser, method: str, path: str, **kwargs: Any) -> Any:
    """The vault's API as the signed-in citizen (with the token the app holds; tests only)."""
    r = b.http.request(method, path, headers={"Authorization": f"Bearer {b.api_token()}"}, **kwargs)
    assert r.status_code < 400, r.text
    return r.json() if r.content else None


def set_cookie_headers(b: Browser, name: str) -> list[str]:
    return [
        value
        for r in b.seen
        for key, value in r.headers.multi_items()
        if key == "set-cookie" and value.startswith(f"{name}=")
    ]


# --------------------------------------------------------------------------------------------------
# Pages, headers, cookies
# --------------------------------------------------------------------------------------------------


def test_welcome_page_has_landmarks_and_strict_headers(web: Browser) -> None:
    r = web.http.get("/app/")
    assert r.status_code == 200
    html = r.text
    assert '<html lang="en">' in html
    assert 'class="skip" href="#main"' in html and '<main id="main"' in html
    assert "<header" in html and "<footer" in html
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and f"form-action 'self' {ISSUER}" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    # Every asset is the app's own: no other origin is named anywhere in the page.
    assert re.findall(r'(?:src|href)="(https?:)?//', html) == []
    static = web.http.get("/app/static/app.css")
    assert static.status_code == 200 and "text/css" in static.headers["content-type"]


def test_session_and_csrf_cookies_are_httponly_secure_samesite(maria: Browser) -> None:
    session = set_cookie_headers(maria, "cv_app_session")
    csrf = set_cookie_headers(maria, "cv_csrf")
    assert session and csrf
    for header in (*session, *csrf):
        lower = header.lower()
        assert "httponly" in lower and "secure" in lower and "samesite=lax" in lower
        assert "path=/app" in lower


def test_tokens_never_reach_the_browser(maria: Browser) -> None:
    maria.http.get("/app/")
    maria.http.get("/app/consents")
    maria.http.get("/app/activity")
    tokens = maria.session_tokens()
    assert len(tokens) == 1 and tokens[0].refresh_token
    secrets = [tokens[0].access_token, tokens[0].refresh_token]
    app_answers = [r for r in maria.seen if r.url.path.startswith("/app")]
    assert len(app_answers) >= 9
    for r in app_answers:
        seen = r.content.decode("utf-8", "replace") + str(r.headers)
        for secret in secrets:
            assert secret not in seen, f"a token reached the browser in {r.url}"
    cookie_values = [c.value for c in maria.http.cookies.jar]
    assert not any(s in v for s in secrets for v in cookie_values)


def test_a_new_session_id_at_sign_in(web: Browser) -> None:
    web.sign_up("ana.ruiz")
    before = web.http.cookies.get("cv_app_session")
    web.confirm_code_and_sign_in("ana.ruiz")
    after = web.http.cookies.get("cv_app_session")
    assert before and after and before != after


def test_pages_need_a_sign_in(web: Browser) -> None:
    for path in ("/app/requests", "/app/consents", "/app/activity", "/app/export"):
        r = web.http.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/app/signin", path


# --------------------------------------------------------------------------------------------------
# CSRF
# --------------------------------------------------------------------------------------------------


def test_forms_without_the_csrf_token_are_refused(maria: Browser) -> None:
    http = maria.http
    r = http.post("/app/requests/energy-monthly-totals/accept", data={}, follow_redirects=False)
    assert r.status_code == 403
    r = http.post(
        "/app/requests/energy-monthly-totals/accept",
        data={"csrf_token": "forged"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    token = maria.csrf(http.get("/app/"))
    r = http.post(
        "/app/requests/energy-monthly-totals/accept",
        data={"csrf_token": token},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    r = http.post(
        "/app/signout",
        data={"csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert api(maria, "GET", "/v1/me/consents")["consents"] == []  # nothing was accepted
    # A token is bound to its browser's cookie: another browser's token does not work here.
    (mine,) = [c for c in http.cookies.jar if c.name == "cv_csrf"]
    http.cookies.set("cv_csrf", "x" * 43, domain=mine.domain, path=mine.path)
    r = http.post("/app/signout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 403
    http.cookies.set("cv_csrf", mine.value or "", domain=mine.domain, path=mine.path)
    r = http.post("/app/signout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303


# --------------------------------------------------------------------------------------------------
# Sign up, sign in, out, recover
# --------------------------------------------------------------------------------------------------


def test_sign_up_shows_the_recovery_code_until_saved_then_signs_in(web: Browser) -> None:
    code = web.sign_up("lucia.m")
    assert re.fullmatch(r"[A-Z0-9]{4}(-[A-Z0-9]{4}){7}", code)
    page = web.http.get("/app/recovery-code")
    r = web.http.post(
        "/app/recovery-code", data={"csrf_token": web.csrf(page)}, follow_redirects=False
    )
    assert r.status_code == 422 and code in r.text  # not ticked: shown again
    done = web.confirm_code_and_sign_in("lucia.m")
    assert done.headers["location"] == "/app/"
    home = web.http.get("/app/")
    assert "Signed in as lucia.m" in home.text and "Welcome, lucia.m" in home.text
    # Shown once: gone after it was confirmed.
    again = web.http.get("/app/recovery-code", follow_redirects=False)
    assert again.status_code == 303
    assert code not in web.http.get("/app/").text


def test_sign_up_explains_each_problem(web: Browser) -> None:
    web.sign_up("taken.name")
    web.http.cookies.clear()
    page = web.http.get("/app/signup")
    r = web.http.post(
        "/app/signup",
        data={"csrf_token": web.csrf(page), "handle": "Bad Name!", "passphrase": "short",
              "confirm": "short"},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 422
    assert "Use 3 to 64 characters" in r.text and "at least 10 characters" in r.text
    assert 'aria-invalid="true"' in r.text and 'href="#handle"' in r.text
    r = web.http.post(
        "/app/signup",
        data={"csrf_token": web.csrf(page), "handle": "taken.name", "passphrase": PASSPHRASE,
              "confirm": PASSPHRASE + "x"},
        follow_redirects=False,
    )  # fmt: skip
    assert "not the same" in r.text
    r = web.http.post(
        "/app/signup",
        data={"csrf_token": web.csrf(page), "handle": "taken.name", "passphrase": PASSPHRASE,
              "confirm": PASSPHRASE},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 422 and "already taken" in r.text


def test_the_sign_in_is_the_vaults_authorization_code_flow_with_pkce(web: Browser) -> None:
    web.sign_up("pkce.user")
    page = web.http.get("/app/recovery-code")
    r = web.http.post(
        "/app/recovery-code",
        data={"csrf_token": web.csrf(page), "saved": "yes"},
        follow_redirects=False,
    )
    params = query(r.headers["location"])
    assert params["client_id"] == "civic-citizen-app"
    assert params["redirect_uri"] == f"{ISSUER}/app/callback"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert set(params["scope"].split()) == {
        "vault:read", "vault:append", "consent:read", "consent:manage",
    }  # fmt: skip
    assert len(params["state"]) >= 32


def test_a_callback_without_its_state_is_refused(maria: Browser) -> None:
    r = maria.http.get("/app/callback", params={"code": "x", "state": "y", "iss": ISSUER})
    assert r.status_code == 400 and "another window" in r.text


def test_deny_at_the_vault_signs_nobody_in(web: Browser) -> None:
    web.sign_up("deny.me")
    page = web.http.get("/app/recovery-code")
    r = web.http.post(
        "/app/recovery-code",
        data={"csrf_token": web.csrf(page), "saved": "yes"},
        follow_redirects=False,
    )
    back = web.approve_at_vault(r.headers["location"], "deny.me", PASSPHRASE, decision="deny")
    assert back.status_code == 200 and "You chose not to sign in" in back.text
    assert web.session_tokens() == []


def test_an_expired_access_token_is_refreshed_once_and_rotated(maria: Browser) -> None:
    (tokens,) = maria.session_tokens()
    old_access, old_refresh = tokens.access_token, tokens.refresh_token
    tokens.expires_at = 0  # as if ten minutes had passed
    assert maria.http.get("/app/consents").status_code == 200
    (fresh,) = maria.session_tokens()
    assert fresh.access_token != old_access and fresh.refresh_token != old_refresh
    # The old refresh token is dead now (rotation).
    r = maria.http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": old_refresh,
              "client_id": "civic-citizen-app"},
    )  # fmt: skip
    assert r.status_code == 400


def test_sign_out_revokes_the_tokens(maria: Browser) -> None:
    (tokens,) = maria.session_tokens()
    r = maria.post("/app/signout")
    assert r.status_code == 303 and r.headers["location"] == "/app/?signed_out=1"
    assert maria.session_tokens() == []
    me = maria.http.get("/v1/me", headers={"Authorization": f"Bearer {tokens.access_token}"})
    assert me.status_code == 401
    r = maria.http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens.refresh_token,
              "client_id": "civic-citizen-app"},
    )  # fmt: skip
    assert r.status_code == 400
    assert maria.http.get("/app/consents", follow_redirects=False).status_code == 303


def test_recover_with_the_recovery_code(web: Browser) -> None:
    code = web.sign_up("rec.user")
    web.http.cookies.clear()
    page = web.http.get("/app/recover")
    new = "a brand new passphrase 9"
    bad = web.http.post(
        "/app/recover",
        data={"csrf_token": web.csrf(page), "handle": "rec.user", "recovery_code": "WRONG-CODE",
              "passphrase": new, "confirm": new},
        follow_redirects=False,
    )  # fmt: skip
    assert bad.status_code == 422 and "not right" in bad.text
    r = web.http.post(
        "/app/recover",
        data={"csrf_token": web.csrf(page), "handle": "rec.user", "recovery_code": code.lower(),
              "passphrase": new, "confirm": new},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/app/recovery-code"
    shown = web.http.get("/app/recovery-code").text
    assert "Your new passphrase is set" in shown and code not in shown
    web.confirm_code_and_sign_in("rec.user", new)
    assert "Signed in as rec.user" in web.http.get("/app/").text


def test_another_name_for_the_server_is_sent_to_the_canonical_one(web: Browser) -> None:
    r = web.http.get("http://localhost/app/signin", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{ISSUER}/app/signin"


# --------------------------------------------------------------------------------------------------
# Requests and consents
# --------------------------------------------------------------------------------------------------


def test_requests_in_plain_words_accept_with_limits(maria: Browser) -> None:
    page = maria.http.get("/app/requests")
    assert page.text.count('class="card"') == 3
    assert "only inside statistics that hide any single household" in page.text
    assert "From the Energy Department" in page.text
    limits = maria.http.get("/app/requests/energy-monthly-totals")
    assert "how much electricity" in limits.text and "3 months" in limits.text
    r = maria.post(
        "/app/requests/energy-monthly-totals/accept",
        {"mode": "limits", "budget": "half", "duration": "3m", "fields_shown": "yes",
         "field": ["energy.consumption:ts", "energy.consumption:kwh"]},
    )  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == "/app/consents"
    (consent,) = api(maria, "GET", "/v1/me/consents")["consents"]
    terms = consent["terms"]
    assert terms["dp_limits"]["epsilon_per_period"] == 0.5
    not_after = datetime.fromisoformat(terms["validity"]["not_after"].replace("Z", "+00:00"))
    assert abs(not_after - (datetime.now(UTC) + timedelta(days=91))) < timedelta(hours=1)
    page = maria.http.get("/app/consents")
    assert "Done. The Energy Department may now use your data" in page.text
    assert "<meter" in page.text and "Energy Department" in page.text
    assert "0.5 per month" in page.text or "0.5" in page.text


def test_accept_as_asked_and_decline(maria: Browser) -> None:
    assert maria.post("/app/requests/mobility-trips/accept").status_code == 303
    assert maria.post("/app/requests/noise-exposure/decline").status_code == 303
    assert maria.http.get("/app/requests").text.count('class="card"') == 1
    (consent,) = api(maria, "GET", "/v1/me/consents")["consents"]
    assert consent["terms"]["dp_limits"]["epsilon_per_period"] == 1.0
    # Accepting twice is explained, not an error page.
    again = maria.post("/app/requests/mobility-trips/accept")
    assert again.status_code == 303 and again.headers["location"] == "/app/requests"
    assert "no longer waiting" in maria.http.get("/app/requests").text


def test_limits_that_do_not_work_together_are_explained(maria: Browser) -> None:
    r = maria.post(
        "/app/requests/energy-monthly-totals/accept",
        {"mode": "limits", "fields_shown": "yes", "field": ["energy.consumption:ts"]},
    )
    assert r.status_code == 422
    assert "These limits could not be accepted" in r.text and "do not work together" in r.text
    assert api(maria, "GET", "/v1/me/consents")["consents"] == []
    r = maria.post(
        "/app/requests/energy-monthly-totals/accept",
        {"mode": "limits", "fields_shown": "yes", "field": ["energy.consumption:kwh"]},
    )
    assert r.status_code == 303
    (consent,) = api(maria, "GET", "/v1/me/consents")["consents"]
    assert consent["terms"]["data_categories"][0]["fields"] == ["kwh"]


def test_withdraw_is_one_click_and_a_confirmation(maria: Browser) -> None:
    maria.post("/app/requests/energy-monthly-totals/accept")
    (consent,) = api(maria, "GET", "/v1/me/consents")["consents"]
    page = maria.http.get("/app/consents")
    link = f"/app/consents/{consent['id']}/withdraw"
    assert f'href="{link}"' in page.text
    confirm = maria.http.get(link)
    assert "Yes, stop sharing" in confirm.text and "Statistics already published" in confirm.text
    r = maria.post(link)
    assert r.status_code == 303
    assert api(maria, "GET", "/v1/me/consents")["consents"][0]["status"] == "withdrawn"
    assert "You stopped sharing with Energy Department" in maria.http.get("/app/consents").text
    assert maria.post(link).status_code == 303  # already ended: explained, no error


def test_receipts_download_in_the_standard_formats(maria: Browser) -> None:
    maria.post("/app/requests/energy-monthly-totals/accept")
    (consent,) = api(maria, "GET", "/v1/me/consents")["consents"]
    for fmt, marker in (("odrl", "odrl"), ("iso27560", "dpv"), ("kantara", "consentReceiptID")):
        r = maria.http.get(f"/app/consents/{consent['id']}/receipt", params={"format": fmt})
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"].startswith("attachment;")
        assert r.headers["content-type"].startswith("application/json")
        assert marker.lower() in r.text.lower()


# --------------------------------------------------------------------------------------------------
# Activity, releases, apps
# --------------------------------------------------------------------------------------------------


def test_activity_is_a_verified_timeline_in_plain_words(maria: Browser) -> None:
    maria.post("/app/requests/energy-monthly-totals/accept")
    maria.post("/app/requests/noise-exposure/decline")
    page = maria.http.get("/app/activity")
    assert "Verified: this log is complete and has not been changed." in page.text
    assert "You created your vault." in page.text
    assert "You signed in to the Civic Vault app." in page.text
    assert "You agreed to share with the Energy Department" in page.text
    assert "You said no to the request &#34;A noise map of the city&#34;." in page.text


def test_a_use_in_a_release_links_to_the_published_result(maria: Browser) -> None:
    rt = maria.app.state.vault
    citizen_id = api(maria, "GET", "/v1/me")["citizen_id"]
    with rt.unit_of_work() as session:
        rt.audit.append(
            session, citizen_id, "aggregation", "data.used_in_release",
            {"release_id": "rel-123", "department": "energy", "purpose": "energy-planning",
             "dataset": "energy.consumption", "epsilon": 0.1, "epsilon_left": 0.4,
             "period_end": "2026-12-01T00:00:00Z"},
        )  # fmt: skip
    page = maria.http.get("/app/activity")
    assert "The Energy Department used your electricity use in a city-wide statistic." in page.text
    assert 'href="/app/releases/rel-123"' in page.text
    assert "It used 0.1 of your privacy budget; 0.4 left until 1 December 2026." in page.text
    home = maria.http.get("/app/")
    assert 'href="/app/releases/rel-123"' in home.text
    missing = maria.http.get("/app/releases/rel-123")
    assert missing.status_code == 404 and "not published" in missing.text


def test_a_size_check_says_whether_anything_was_published(maria: Browser) -> None:
    rt = maria.app.state.vault
    citizen_id = api(maria, "GET", "/v1/me")["citizen_id"]
    with rt.unit_of_work() as session:
        for release_id, status, left_out in (
            ("rel-refused", "refused", None),
            ("rel-released", "released", "group_size"),
            ("rel-withdrawn", "released", "consent_changed"),
        ):
            rt.audit.append(
                session, citizen_id, "aggregation", "data.counted_in_size_check",
                {"release_id": release_id, "status": status, "department": "energy",
                 "purpose": "energy-planning", "dataset": "energy.consumption", "epsilon": 0.05,
                 **({"left_out": left_out} if left_out else {})},
            )  # fmt: skip
    page = maria.http.get("/app/activity")
    assert "you were counted. Nothing was published." in page.text  # the refused query
    # A released one, where this citizen's terms asked for a larger group than it had.
    assert (
        "Your terms ask for a larger group, so your data was left out of what was published."
        in page.text
    )
    # One the citizen withdrew from after its size check, before their data was read.
    assert (
        "By the time your data would have been read, your consent had been withdrawn, changed or "
        "had ended, so your data was left out of what was published." in page.text
    )


def test_connected_apps_list_and_disconnecting_this_app_signs_out(maria: Browser) -> None:
    page = maria.http.get("/app/apps")
    assert "Civic Vault app" in page.text and "the app you are using now" in page.text
    confirm = maria.http.get("/app/apps/civic-citizen-app/disconnect")
    assert "you will be signed out" in confirm.text
    r = maria.post("/app/apps/civic-citizen-app/disconnect")
    assert r.status_code == 303 and r.headers["location"] == "/app/?signed_out=1"
    assert maria.session_tokens() == []


# --------------------------------------------------------------------------------------------------
# Add data, export, delete
# --------------------------------------------------------------------------------------------------


def _upload(b: Browser, csv: str, stream_type: str = "energy.consumption") -> Any:
    token = b.csrf(b.http.get("/app/add-data"))
    return b.http.post(
        "/app/add-data",
        data={"csrf_token": token, "stream_type": stream_type},
        files={"file": ("readings.csv", io.BytesIO(csv.encode()), "text/csv")},
    )


def test_add_data_shows_each_bad_row_then_adds_a_good_file(maria: Browser) -> None:
    bad = _upload(maria, "ts,kwh\n2026-03-01,7.5\n2026-03-02,80\nnope,3\n")
    assert bad.status_code == 422
    rows = re.findall(r"<tr><td>(\d+)</td><td>(\w+)</td><td>([^<]+)</td></tr>", bad.text)
    assert [(line, column) for line, column, _ in rows] == [("3", "kwh"), ("4", "ts")]
    assert "between 0 and 50" in rows[0][2]
    today = datetime.now(UTC).date()
    good = "ts,kwh\n" + "".join(f"{today - timedelta(days=d)},{4 + d}\n" for d in range(3))
    ok = _upload(maria, good)
    assert ok.status_code == 200 and "Added 3 readings to Electricity use." in ok.text
    again = _upload(maria, good)  # the same file twice lands once
    assert "already in Electricity use" in again.text
    (stream,) = api(maria, "GET", "/v1/me/streams")["streams"]
    assert stream["record_count"] == 3
    home = maria.http.get("/app/")
    assert home.text.count("<rect ") == 3 and "in total 15 kWh" in home.text


def test_add_data_refuses_what_it_cannot_read(maria: Browser) -> None:
    assert _upload(maria, "ts,kwh\n", stream_type="no.such.type").status_code == 422
    empty = _upload(maria, "   ")
    assert empty.status_code == 422 and "empty" in empty.text


def test_export_downloads_a_bundle_that_verifies(maria: Browser) -> None:
    from vault.bundle import verify_bundle

    r = maria.post("/app/export")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"].startswith("attachment;")
    assert zipfile.is_zipfile(io.BytesIO(r.content))
    assert verify_bundle(r.content).ok


def test_delete_needs_the_box_and_the_passphrase(maria: Browser) -> None:
    r = maria.post("/app/delete", {"passphrase": PASSPHRASE})
    assert r.status_code == 422 and "tick the box" in r.text
    r = maria.post("/app/delete", {"understand": "yes", "passphrase": "wrong passphrase!"})
    assert r.status_code == 401 and "Nothing was deleted" in r.text
    r = maria.post("/app/delete", {"understand": "yes", "passphrase": PASSPHRASE})
    assert r.status_code == 303 and r.headers["location"] == "/app/?deleted=1"
    assert maria.session_tokens() == []
    gone = maria.http.post("/v1/session", json={"handle": "maria.lopez", "passphrase": PASSPHRASE})
    assert gone.status_code == 401
    assert "were deleted" in maria.http.get("/app/?deleted=1").text


# --------------------------------------------------------------------------------------------------
# Language
# --------------------------------------------------------------------------------------------------


def test_the_language_switch_is_remembered_in_a_cookie(maria: Browser) -> None:
    r = maria.post("/app/lang", {"lang": "es", "next": "/app/consents"})
    assert r.status_code == 303 and r.headers["location"] == "/app/consents"
    (cookie,) = set_cookie_headers(maria, "cv_lang")
    assert "cv_lang=es" in cookie and "Max-Age=31536000" in cookie
    page = maria.http.get("/app/consents")
    assert '<html lang="es">' in page.text and "Mis consentimientos" in page.text
    requests = maria.http.get("/app/requests")
    assert "Solicitudes de la ciudad" in requests.text
    assert "solo dentro de" in requests.text  # the vault's own plain summary, in Spanish
    back = maria.post("/app/lang", {"lang": "en", "next": "https://evil.example/"})
    assert back.headers["location"] == "/app/"  # never redirected elsewhere
    assert '<html lang="en">' in maria.http.get("/app/").text


def test_the_browsers_language_is_the_default(web: Browser) -> None:
    web.http.cookies.clear()
    r = web.http.get("/app/", headers={"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"})
    assert '<html lang="es">' in r.text and "Tus datos de la ciudad" in r.text
    r = web.http.get("/app/", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert '<html lang="en">' in r.text


# --------------------------------------------------------------------------------------------------
# With the aggregation service: a release, the budget meter, the result page
# --------------------------------------------------------------------------------------------------


def test_a_release_reaches_activity_the_result_page_and_the_budget_meter(tmp_path: Path) -> None:
    from conftest import DEFAULT_PASSPHRASE

    from tests.aggregation_support import (
        QUERY,
        aggregation_settings,
        populate,
        publish_city,
        staff_token,
    )

    settings = aggregation_settings(tmp_path, citizen_settings(tmp_path).database_url)
    with browser(settings, publish=False) as b:
        publish_city(b.http)
        populate(b.http, 9)
        b.sign_in("res000", DEFAULT_PASSPHRASE)
        before = b.http.get("/app/consents").text
        assert ">0% used: 0 of 8 spent" in before
        r = b.http.post("/v1/queries", json=QUERY, headers=staff_token(b.http))
        assert r.status_code == 201, r.text
        release_id = r.json()["release_id"]

        activity = b.http.get("/app/activity").text
        assert "used your electricity use in a city-wide statistic" in activity
        assert f'href="/app/releases/{release_id}"' in activity
        assert "of your privacy budget" in activity
        assert f'href="/app/releases/{release_id}"' in b.http.get("/app/").text

        result = b.http.get(f"/app/releases/{release_id}")
        assert result.status_code == 200, result.text
        assert "What the Energy Department learned" in result.text
        assert "Old Town" in result.text and "between" in result.text
        assert result.text.count('<li class="card"') == 8  # one per district

        consents = b.http.get("/app/consents").text
        assert "50% used: 4 of 8 spent, 4 left until" in consents
        assert "1 of 10 statistics this period." in consents
        assert re.search(r'<meter min="0" max="8\.0" value="[1-9]', consents), consents
        spanish = b.post("/app/lang", {"lang": "es", "next": f"/app/releases/{release_id}"})
        page = b.http.get(spanish.headers["location"]).text
        assert "Qué aprendió el Departamento de Energía" in page and "entre" in page


# --------------------------------------------------------------------------------------------------
# The app's OAuth client registration (vault/oauth/demo.py)
# --------------------------------------------------------------------------------------------------


def test_the_mounted_callback_is_registered_and_added_to_an_older_seed(settings_: Settings) -> None:
    import json as json_

    from server.app import create_app
    from vault.oauth import clients
    from vault.oauth.demo import CITIZEN_APP_ID, ensure_citizen_app_callback, seed_oauth_demo
    from vault.oauth.runtime import OAuthConfig, OAuthRuntime

    app = create_app(settings_)
    rt = app.state.vault
    old = OAuthRuntime.build(rt, OAuthConfig(issuer="http://127.0.0.1:8000"))
    assert ensure_citizen_app_callback(rt, old) is False  # nothing seeded: nothing to do
    seed_oauth_demo(rt, old, {})

    def uris() -> list[str]:
        with rt.unit_of_work() as session:
            row = clients.get_client(session, CITIZEN_APP_ID)
            assert row is not None
            return list(json_.loads(row.redirect_uris))

    assert "http://127.0.0.1:8000/app/callback" in uris()
    moved = OAuthRuntime.build(rt, OAuthConfig(issuer="http://127.0.0.1:9000"))
    assert ensure_citizen_app_callback(rt, moved) is True
    assert ensure_citizen_app_callback(rt, moved) is False  # once
    assert {"http://127.0.0.1:8000/app/callback", "http://127.0.0.1:9000/app/callback"} <= set(
        uris()
    )
    seed_oauth_demo(rt, OAuthRuntime.build(rt, OAuthConfig(issuer="http://127.0.0.1:9100")), {})
    assert "http://127.0.0.1:9100/app/callback" in uris()
    assert "http://127.0.0.1:8770/callback" in uris()  # the earlier ones stay
    rt.engine.dispose()
