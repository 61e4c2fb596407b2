"""The developer page: sign in, register an app, see its client id, rotate its secret."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from test_oauth_helpers import DEFAULT_PASSPHRASE, REDIRECT, AppClient, Harness, bearer, harness

from vault.settings import Settings

TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
SHOWN = re.compile(r"client_(id|secret): <code>([^<]+)</code>")


@pytest.fixture
def oauth(settings: Settings) -> Iterator[Harness]:
    with harness(settings) as h:
        h.citizen("alice")
        yield h


def _form_token(oauth: Harness) -> str:
    page = oauth.http.get("/developers")
    match = TOKEN.search(page.text)
    assert match, page.text
    return match.group(1)


def _sign_in(oauth: Harness, handle: str = "alice") -> None:
    r = oauth.http.post(
        "/developers/sign-in",
        data={"form_token": _form_token(oauth), "handle": handle, "passphrase": DEFAULT_PASSPHRASE},
    )
    assert r.status_code == 200 and "Signed in as" in r.text, r.text


def _register(oauth: Harness, **fields: str) -> dict[str, str]:
    data = {
        "form_token": _form_token(oauth),
        "client_name": "Trip Diary",
        "redirect_uris": REDIRECT,
        "client_type": "confidential",
        "scope": "vault:append",
    } | fields
    r = oauth.http.post("/developers/apps", data=data)
    assert r.status_code == 201, r.text
    return dict(SHOWN.findall(r.text))


def test_page_has_the_guide_and_security_headers(oauth: Harness) -> None:
    r = oauth.http.get("/developers")
    assert r.status_code == 200
    assert "Get a token in five steps" in r.text and "Sign in with your vault account" in r.text
    assert r.headers["x-frame-options"] == "DENY"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "http://" not in r.text.split("<body>")[1].replace(
        "http://127.0.0.1", ""
    )  # no external assets


def test_register_an_app_and_use_it(oauth: Harness) -> None:
    _sign_in(oauth)
    shown = _register(oauth)
    assert shown["secret"].startswith("cvs_")
    page = oauth.http.get("/developers")
    assert shown["id"] in page.text and "Trip Diary" in page.text
    assert shown["secret"] not in page.text  # shown once only
    app = AppClient(shown["id"], shown["secret"])
    assert oauth.tokens(app, "alice", scope="vault:append")["access_token"]


def test_register_a_public_app(oauth: Harness) -> None:
    _sign_in(oauth)
    shown = _register(oauth, client_type="public", redirect_uris="http://127.0.0.1:8765/callback")
    assert "secret" not in shown


def test_rotate_secret(oauth: Harness) -> None:
    _sign_in(oauth)
    shown = _register(oauth)
    r = oauth.http.post(
        f"/developers/apps/{shown['id']}/rotate-secret", data={"form_token": _form_token(oauth)}
    )
    assert r.status_code == 200
    new = dict(SHOWN.findall(r.text))["secret"]
    assert new != shown["secret"]
    old = AppClient(shown["id"], shown["secret"])
    assert oauth.token(old, {"grant_type": "client_credentials"}).status_code == 401


def test_rotating_another_developers_app_is_not_found(oauth: Harness) -> None:
    oauth.citizen("bob.b")
    _sign_in(oauth, "bob.b")
    shown = _register(oauth)
    oauth.http.cookies.clear()
    _sign_in(oauth, "alice")
    r = oauth.http.post(
        f"/developers/apps/{shown['id']}/rotate-secret", data={"form_token": _form_token(oauth)}
    )
    assert r.status_code == 404


def test_forms_without_a_valid_token_are_refused(oauth: Harness) -> None:
    _sign_in(oauth)
    r = oauth.http.post(
        "/developers/apps",
        data={"client_name": "x", "redirect_uris": REDIRECT, "form_token": "nope.nope"},
    )
    assert r.status_code == 400
    assert "client_secret" not in r.text


def test_registering_without_signing_in_is_refused(oauth: Harness) -> None:
    r = oauth.http.post(
        "/developers/apps", data={"form_token": _form_token(oauth), "client_name": "x"}
    )
    assert r.status_code == 401


def test_wrong_passphrase_does_not_sign_in(oauth: Harness) -> None:
    r = oauth.http.post(
        "/developers/sign-in",
        data={
            "form_token": _form_token(oauth),
            "handle": "alice",
            "passphrase": "wrong wrong wrong",
        },
    )
    assert r.status_code == 401 and "Signed in as" not in r.text


def test_developer_session_opens_no_api(oauth: Harness) -> None:
    _sign_in(oauth)
    token = oauth.http.cookies.get("cv_dev")
    assert token
    assert oauth.http.get("/v1/me", headers=bearer(token)).status_code == 401
    assert oauth.http.get("/v1/me/streams", headers=bearer(token)).status_code == 401


def test_sign_out_ends_the_session(oauth: Harness) -> None:
    _sign_in(oauth)
    token = oauth.http.cookies.get("cv_dev")
    r = oauth.http.post("/developers/sign-out", data={"form_token": _form_token(oauth)})
    assert r.status_code == 200 and "Sign in with your vault account" in r.text
    r = oauth.http.post(
        "/oauth/register",
        json={"client_name": "x", "redirect_uris": [REDIRECT]},
        headers=bearer(token or ""),
    )
    assert r.status_code == 401
