"""Helpers shared by the OAuth tests (no tests here): an app with the authorization server
installed, and a harness that drives the authorization-code flow through the consent page."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from conftest import DEFAULT_PASSPHRASE, Citizen, register
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vault.oauth import clients, staff
from vault.oauth.runtime import OAuthConfig, OAuthRuntime
from vault.settings import Settings

ISSUER = "https://testserver"
REDIRECT = "https://trips.example/callback"
TRIP_DETAILS = [
    {
        "type": "civic-vault:consent",
        "stream_types": ["mobility.trip"],
        "actions": ["append"],
        "purpose": "trip-diary",
    }
]
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    return verifier, challenge


def build_app(settings: Settings, **config: Any) -> tuple[FastAPI, OAuthRuntime]:
    from server.app import create_app

    app = create_app(settings)  # the routes are installed there; the tests' own configuration:
    rt = OAuthRuntime.build(app.state.vault, OAuthConfig(issuer=ISSUER, **config))
    app.state.oauth = rt
    return app, rt


@dataclass
class AppClient:
    client_id: str
    client_secret: str | None
    redirect_uri: str = REDIRECT

    @property
    def basic(self) -> httpx.BasicAuth | None:
        return (
            None
            if self.client_secret is None
            else httpx.BasicAuth(self.client_id, self.client_secret)
        )


@dataclass
class Authz:
    """One authorization request in progress."""

    params: dict[str, str]
    verifier: str
    state: str


@dataclass
class Harness:
    app: FastAPI
    rt: OAuthRuntime
    http: TestClient
    citizens: dict[str, Citizen] = field(default_factory=dict)

    # --- people -----------------------------------------------------------------------------------

    def citizen(self, handle: str) -> Citizen:
        if handle not in self.citizens:
            self.citizens[handle] = register(self.http, handle)
        return self.citizens[handle]

    def staff(self, handle: str, department: str = "energy", role: str = "analyst") -> str:
        with self.rt.vault.unit_of_work() as session:
            staff.create_staff_account(session, handle, DEFAULT_PASSPHRASE, department, role)
        return handle

    # --- clients ----------------------------------------------------------------------------------

    def register_app(
        self,
        *,
        owner: Citizen | None = None,
        redirect_uris: list[str] | None = None,
        public: bool = False,
        scope: str = "vault:append vault:read",
        name: str = "Trip Diary",
    ) -> AppClient:
        token = owner.token if owner is not None else self.rt.initial_access_token
        body = {
            "client_name": name,
            "redirect_uris": redirect_uris or [REDIRECT],
            "token_endpoint_auth_method": "none" if public else "client_secret_basic",
            "scope": scope,
        }
        r = self.http.post(
            "/oauth/register", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 201, r.text
        data = r.json()
        return AppClient(
            data["client_id"], data.get("client_secret"), (redirect_uris or [REDIRECT])[0]
        )

    def make_client(self, **kwargs: Any) -> AppClient:
        """A client made the way the demo seed makes them (first-party, staff, service)."""
        with self.rt.vault.unit_of_work() as session:
            reg = clients.create_client(session, **kwargs)
        uris = kwargs.get("redirect_uris") or [REDIRECT]
        return AppClient(reg.client.client_id, reg.client_secret, uris[0])

    def first_party_app(self) -> AppClient:
        return self.make_client(
            client_name="Civic Vault app",
            kind="citizen",
            first_party=True,
            redirect_uris=[REDIRECT],
            scope={"vault:read", "vault:append", "consent:read", "consent:manage"},
            token_endpoint_auth_method="none",
        )

    def console_app(self) -> AppClient:
        return self.make_client(
            client_name="Department console",
            kind="staff",
            first_party=True,
            redirect_uris=[REDIRECT],
            scope={"aggregate:query", "department:admin"},
            token_endpoint_auth_method="none",
        )

    def department_client(self, department: str = "energy") -> AppClient:
        return self.make_client(
            client_name=f"{department} service",
            kind="service",
            first_party=True,
            department_id=department,
            grant_types=["client_credentials"],
            scope={"aggregate:query", "department:admin"},
        )

    # --- the authorization endpoint ---------------------------------------------------------------

    def start(
        self,
        client: AppClient,
        *,
        scope: str | None = None,
        details: list[dict[str, Any]] | None = TRIP_DETAILS,
        redirect_uri: str | None = None,
        pkce: bool = True,
        **extra: str,
    ) -> Authz:
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(12)
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri or client.redirect_uri,
            "state": state,
        }
        if pkce:
            params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
        if scope is not None:
            params["scope"] = scope
        if details is not None:
            params["authorization_details"] = json.dumps(details)
        params |= extra
        return Authz({k: v for k, v in params.items() if v is not None}, verifier, state)

    def consent_page(self, authz: Authz) -> httpx.Response:
        return self.http.get("/oauth/authorize", params=authz.params, follow_redirects=False)

    def decide(
        self,
        authz: Authz,
        *,
        handle: str | None = None,
        passphrase: str = DEFAULT_PASSPHRASE,
        decision: str = "approve",
        page: httpx.Response | None = None,
    ) -> httpx.Response:
        page = page or self.consent_page(authz)
        assert page.status_code == 200, page.text
        token = FORM_TOKEN.search(page.text)
        action = FORM_ACTION.search(page.text)
        assert token and action
        form = {"form_token": token.group(1), "decision": decision}
        if handle is not None:
            form |= {"handle": handle, "passphrase": passphrase}
        return self.http.post(
            action.group(1).replace("&amp;", "&"), data=form, follow_redirects=False
        )

    def code(self, authz: Authz, handle: str, **kwargs: Any) -> str:
        r = self.decide(authz, handle=handle, **kwargs)
        assert r.status_code == 303, r.text
        query = redirect_params(r)
        assert query.get("iss") == ISSUER, query
        assert query.get("state") == authz.state
        assert "code" in query, query
        return query["code"]

    # --- the token endpoint -----------------------------------------------------------------------

    def token(
        self, client: AppClient, data: dict[str, str], *, basic: bool = True
    ) -> httpx.Response:
        auth = client.basic if basic else None
        if client.client_secret is None or not basic:
            data = {"client_id": client.client_id, **data}
        return self.http.post("/oauth/token", data=data, auth=auth)

    def exchange(
        self, client: AppClient, code: str, authz: Authz, **overrides: str
    ) -> httpx.Response:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": authz.params["redirect_uri"],
            "code_verifier": authz.verifier,
        } | overrides
        return self.token(client, {k: v for k, v in data.items() if v is not None})

    def tokens(
        self, client: AppClient, handle: str, *, passphrase: str = DEFAULT_PASSPHRASE, **start: Any
    ) -> dict[str, Any]:
        authz = self.start(client, **start)
        r = self.exchange(client, self.code(authz, handle, passphrase=passphrase), authz)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def refresh(self, client: AppClient, refresh_token: str, **extra: str) -> httpx.Response:
        return self.token(
            client, {"grant_type": "refresh_token", "refresh_token": refresh_token} | extra
        )

    def introspect(self, client: AppClient, token: str) -> httpx.Response:
        return self.http.post("/oauth/introspect", data={"token": token}, auth=client.basic)


def redirect_params(response: httpx.Response) -> dict[str, str]:
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def harness(settings: Settings, **config: Any) -> Iterator[Harness]:
    app, rt = build_app(settings, **config)
    with TestClient(app, base_url=ISSUER) as http:
        yield Harness(app, rt, http)


def query(params: dict[str, str]) -> str:
    return urlencode(params)
