"""The Authlib ``AuthorizationServer``, adapted to FastAPI/Starlette (Authlib ships no such
integration, and its core is synchronous).

How the adapter works, and what it guarantees:

* :func:`build_request` turns a Starlette request into an ``OAuth2Request``, passing the headers
  **by keyword** (positionally they would land in ``body`` and HTTP Basic client authentication
  would silently fail). Parameters come from the query (authorization endpoint) or from an
  ``application/x-www-form-urlencoded`` body (token, introspection, revocation), never both, so a
  client secret or code in a URL is never read at the token endpoint; a repeated parameter is
  refused (RFC 6749 §3.1, §3.2).
* The request URI handed to Authlib is the configured issuer plus the path, so Authlib's
  https-or-loopback check applies to the issuer the server announces.
* A :class:`CivicAuthorizationServer` is made per request around that request's database session
  and runs in a worker thread (:func:`run_oauth`): no state is shared between requests, and
  everything a request writes (including revocations caused by a replayed code or a reused refresh
  token, answered with an error) commits or rolls back together.
* Authlib's ``(status, body, headers)`` answers become :class:`OAuthResult`; the API layer turns
  them into Starlette responses, adds ``iss`` (RFC 9207) to every authorization redirect (errors
  too) and ``Cache-Control: no-store`` to every answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from vault.clock import utcnow
from vault.crypto import token_secrets
from vault.oauth import clients, policy
from vault.oauth import repositories as repo
from vault.oauth.clients import ClientView
from vault.oauth.grants import (
    CivicAuthorizationCodeGrant,
    CivicClientCredentialsGrant,
    CivicRefreshTokenGrant,
    S256CodeChallenge,
)
from vault.oauth.issuance import TokenIssuer

if TYPE_CHECKING:
    from vault.oauth.runtime import OAuthRuntime

T = TypeVar("T")
FORM_TYPE = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class OAuthResult:
    """An answer from Authlib (or from us, in Authlib's shape)."""

    status: int
    body: dict[str, Any] | str
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "location":
                return value
        return None

    @property
    def error(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None

    @classmethod
    def failure(cls, error: str, description: str, status: int = 400) -> OAuthResult:
        return cls(status, {"error": error, "error_description": description}, [])

    def with_issuer(self, issuer: str) -> OAuthResult:
        """The same answer with ``iss`` added to its redirect (RFC 9207 §2), if it has one."""
        location = self.location
        if location is None:
            return self
        headers = [(n, v) for n, v in self.headers if n.lower() != "location"]
        headers.append(("Location", add_params_to_uri(location, [("iss", issuer)])))
        return OAuthResult(self.status, self.body, headers)

    def to_response(self, *, after_post: bool = False) -> Response:
        """The Starlette response. A redirect answering a POST (the consent form, which carried
        the user's passphrase) is a 303, so no browser re-posts the form to the client (RFC 9700
        §4.12); other redirects are 302."""
        headers = {n: v for n, v in self.headers if n.lower() not in ("content-type", "location")}
        headers.update(NO_STORE)
        location = self.location
        if location is not None:
            return RedirectResponse(
                location, status_code=303 if after_post else 302, headers=headers
            )
        if isinstance(self.body, dict):
            return JSONResponse(self.body, self.status, headers=headers)
        return Response(self.body, self.status, headers=headers, media_type="text/plain")


class CivicOAuth2Request(OAuth2Request):  # type: ignore[misc]
    def __init__(
        self,
        method: str,
        uri: str,
        headers: Any,
        query: dict[str, str],
        form: dict[str, str],
        from_query: bool,
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._query = query
        self._form = form
        self.payload = BasicOAuth2Payload(query if from_query else form)

    @property
    def args(self) -> dict[str, str]:
        return self._query

    @property
    def form(self) -> dict[str, str]:
        return self._form


class RequestRefused(Exception):
    """The HTTP request cannot become an OAuth request (carries the OAuth error to answer)."""

    def __init__(self, result: OAuthResult) -> None:
        super().__init__(result.body)
        self.result = result


def _single(items: list[tuple[str, str]], where: str) -> dict[str, str]:
    seen: dict[str, str] = {}
    for key, value in items:
        if key in seen:
            raise RequestRefused(
                OAuthResult.failure(
                    "invalid_request", f"Parameter '{key}' is repeated in the {where}."
                )
            )
        seen[key] = value
    return seen


async def build_request(
    request: Request, issuer: str, *, from_query: bool, read_form: bool = True
) -> CivicOAuth2Request:
    """The ``OAuth2Request`` for ``request`` (see the module docstring)."""
    query = _single(list(request.query_params.multi_items()), "query")
    form: dict[str, str] = {}
    if request.method == "POST" and read_form:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != FORM_TYPE:
            raise RequestRefused(
                OAuthResult.failure("invalid_request", f"Send the parameters as {FORM_TYPE}.")
            )
        data = await request.form()
        form = _single([(k, v) for k, v in data.multi_items() if isinstance(v, str)], "body")
    uri = issuer + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return CivicOAuth2Request(
        request.method, uri, request.headers, query, form, from_query=from_query
    )


@dataclass(frozen=True)
class TokenInfo:
    """A token looked up for introspection or revocation (``TokenMixin``)."""

    type_hint: str  # access_token | refresh_token
    digest: str
    client_id: str
    token_kind: str
    scope: str
    audience: str
    authorization_details: list[dict[str, Any]]
    citizen_id: str | None
    staff_id: str | None
    department_id: str | None
    family_id: str | None
    issued_at: int
    expires_at: int
    revoked: bool

    def check_client(self, client: ClientView) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.expires_at <= int(utcnow().timestamp())

    def is_revoked(self) -> bool:
        return self.revoked


def _lookup(session: Session, token_string: str, hint: str | None) -> TokenInfo | None:
    try:
        digest = token_secrets.token_digest(token_string)
    except token_secrets.TokenFormatError:
        return None
    order = (
        ("refresh_token", "access_token")
        if hint == "refresh_token"
        else ("access_token", "refresh_token")
    )
    for kind in order:
        if kind == "access_token":
            row = repo.oauth_access_token(session, digest)
            if row is not None and row.client_id is not None:
                staff_id = None
                if row.family_id is not None:
                    fam = repo.family(session, row.family_id)
                    staff_id = fam.staff_id if fam is not None else None
                return TokenInfo(
                    "access_token", digest, row.client_id, row.kind, row.scope, row.audience,
                    json.loads(row.authorization_details), row.citizen_id, staff_id,
                    row.department_id, row.family_id, int(row.created_at.timestamp()),
                    int(row.expires_at.timestamp()), row.revoked_at is not None,
                )  # fmt: skip
        else:
            refresh = repo.refresh_by_digest(session, digest)
            if refresh is None:
                continue
            fam = repo.family(session, refresh.family_id)
            if fam is None:
                continue
            revoked = (
                refresh.revoked_at is not None
                or refresh.used_at is not None
                or fam.revoked_at is not None
            )
            return TokenInfo(
                "refresh_token", digest, refresh.client_id, fam.token_kind, fam.scope, fam.audience,
                json.loads(fam.authorization_details), fam.citizen_id, fam.staff_id,
                fam.department_id, fam.family_id, int(refresh.created_at.timestamp()),
                int(min(refresh.expires_at, fam.expires_at).timestamp()), revoked,
            )  # fmt: skip
    return None


class CivicIntrospectionEndpoint(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662. The caller must authenticate as a confidential client, and learns only about its
    own tokens: any other token is ``{"active": false}``, exactly like an unknown one."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    server: CivicAuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenInfo | None:
        return _lookup(self.server.session, token_string, token_type_hint)

    def check_permission(self, token: TokenInfo, client: ClientView, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: TokenInfo) -> dict[str, Any]:
        sub = token.citizen_id or token.staff_id or token.client_id
        payload: dict[str, Any] = {
            "active": True,
            "iss": self.server.rt.config.issuer,
            "client_id": token.client_id,
            "token_type": "Bearer" if token.type_hint == "access_token" else "refresh_token",
            "scope": token.scope,
            "aud": token.audience,
            "sub": sub,
            "iat": token.issued_at,
            "exp": token.expires_at,
            "civic_kind": token.token_kind,
        }
        if token.authorization_details:
            payload["authorization_details"] = token.authorization_details
        if token.department_id:
            payload["civic_department_id"] = token.department_id
        return payload


class CivicRevocationEndpoint(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009. Revoking a refresh token revokes its whole family (every access token issued
    under the same grant too); revoking an access token revokes that token."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    server: CivicAuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenInfo | None:
        return _lookup(self.server.session, token_string, token_type_hint)

    def revoke_token(self, token: TokenInfo, request: Any) -> None:
        now = utcnow()
        if token.type_hint == "refresh_token" and token.family_id is not None:
            repo.revoke_family(self.server.session, token.family_id, now)
        else:
            repo.revoke_access_token(self.server.session, token.digest, now)


class CivicAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """One per request, around that request's session (see the module docstring)."""

    def __init__(self, rt: OAuthRuntime, session: Session) -> None:
        super().__init__(scopes_supported=sorted(policy.SCOPE_AUDIENCE))
        self.rt = rt
        self.session = session
        self.issuer = TokenIssuer(session, rt.config.lifetimes)
        self.register_grant(CivicAuthorizationCodeGrant, [S256CodeChallenge(required=True)])
        self.register_grant(CivicRefreshTokenGrant)
        self.register_grant(CivicClientCredentialsGrant)
        self.register_endpoint(CivicIntrospectionEndpoint)
        self.register_endpoint(CivicRevocationEndpoint)

    def query_client(self, client_id: str) -> ClientView | None:
        return clients.active_client(self.session, client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Nothing to do: :class:`~vault.oauth.issuance.TokenIssuer` stores each token where it
        makes it, so the stored expiry is exactly the announced one."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        raise TypeError("build the OAuth2Request with vault.oauth.server.build_request first")

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("no JSON endpoints go through Authlib here")

    def handle_response(self, status: int, body: Any, headers: Any) -> OAuthResult:
        return OAuthResult(int(status), body if isinstance(body, dict | str) else "", list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


async def run_oauth(rt: OAuthRuntime, work: Callable[[CivicAuthorizationServer], T]) -> T:
    """Run ``work`` with a per-request server in a worker thread, inside one unit of work."""

    def _run() -> T:
        with rt.vault.unit_of_work() as session:
            return work(CivicAuthorizationServer(rt, session))

    return await run_in_threadpool(_run)
