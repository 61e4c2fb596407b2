"""Authlib grants, hardened (RFC 9700), and the views of codes and refresh tokens they use.

Properties, each enforced here:

* **PKCE, S256 only, for every client** (RFC 9700 §2.1.1, §4.8): an authorization request without
  ``code_challenge``, or with a method other than ``S256`` (``plain`` or none given), is refused;
  a token request without ``code_verifier``, with a wrong one, or with one for a code that has no
  challenge (downgrade), is refused.
* **Codes** are ``cv_`` tokens stored by digest, single use, bound to client, redirect URI and
  challenge, and live ``code_ttl`` seconds (at most 600). A code presented a second time revokes
  every token issued from it (RFC 6749 §4.1.2, RFC 9700 §4.5).
* **Refresh tokens** rotate on every use; presenting a used one revokes the whole family (RFC 9700
  §4.14.2); a family has an absolute end no refresh can pass.
* **Client credentials** are for department service accounts only (confidential, no refresh).
* ``resource`` (RFC 8707) at the token endpoint must name the audience already granted.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
    grants,
)
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge

from vault.clock import utcnow
from vault.crypto import token_secrets
from vault.oauth import policy, rar
from vault.oauth import repositories as repo
from vault.oauth.clients import ClientView
from vault.oauth.issuance import Subject
from vault.oauth.models import OAuthAuthorization, OAuthAuthorizationCode, OAuthRefreshToken
from vault.oauth.staff import staff_by_id
from vault.principal import VAULT_AUDIENCE
from vault.repositories import citizens as citizen_repo

if TYPE_CHECKING:
    from vault.oauth.server import CivicAuthorizationServer


def _compare_s256(verifier: str, challenge: str) -> bool:
    return hmac.compare_digest(create_s256_code_challenge(verifier), challenge)


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE (RFC 7636) with ``S256`` only, required for every client, public or confidential."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": _compare_s256}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError(
                "PKCE is required: send code_challenge and code_challenge_method=S256."
            )
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError(
                "code_challenge_method must be S256 (plain, or no method, is not accepted)."
            )
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        request = grant.request
        challenge = self.get_authorization_code_challenge(request.authorization_code)
        verifier = request.form.get("code_verifier")
        if not challenge:
            # RFC 9700 §4.8.2: a verifier for a code issued without a challenge is refused (and
            # here every code has one, so such a code is refused outright).
            raise InvalidGrantError("This code was issued without a PKCE challenge.")
        if not verifier:
            raise InvalidRequestError("Missing 'code_verifier'.")
        if self.get_authorization_code_challenge_method(request.authorization_code) != "S256":
            raise InvalidGrantError("This code was issued with an unsupported PKCE method.")
        super().validate_code_verifier(grant, result)


@dataclass(frozen=True)
class CodeView:
    """An authorization code as Authlib sees it (``AuthorizationCodeMixin``)."""

    row: OAuthAuthorizationCode
    root_secret: bytes | None = field(default=None, repr=False)

    @property
    def code_challenge(self) -> str | None:
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str | None:
        return self.row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope


@dataclass(frozen=True)
class RefreshView:
    """A live refresh token and its family, as Authlib sees it (``TokenMixin``)."""

    row: OAuthRefreshToken
    family: OAuthAuthorization
    root_secret: bytes | None = field(default=None, repr=False)

    def check_client(self, client: ClientView) -> bool:
        return self.row.client_id == client.client_id

    def get_scope(self) -> str:
        return self.family.scope


@dataclass(frozen=True)
class AuthorizationAsk:
    """What an authorization request asks for, once validated (scopes include those implied by
    ``authorization_details``)."""

    scopes: frozenset[str]
    audience: str
    details: tuple[dict[str, Any], ...]


def _check_resource(request: Any, audience: str) -> None:
    resource = request.form.get("resource")
    if resource is not None and resource != audience:
        raise policy.InvalidTargetError("The resource does not match what was authorized.")


def _subject_of(grant: Any, root_secret: bytes | None) -> Subject:
    """Who a stored grant (an authorization code or a refresh family: same columns) acts for."""
    return Subject(
        token_kind=grant.token_kind,
        audience=grant.audience,
        citizen_id=grant.citizen_id,
        staff_id=grant.staff_id,
        department_id=grant.department_id,
        authorization_details=tuple(_load(grant.authorization_details)),
        family_id=grant.family_id,
        root_secret=root_secret,
    )


def _subject_still_exists(server: CivicAuthorizationServer, subject: Subject) -> bool:
    if subject.citizen_id is not None:
        return citizen_repo.by_id(server.session, subject.citizen_id) is not None
    if subject.staff_id is not None:
        return staff_by_id(server.session, subject.staff_id) is not None
    return True


class CivicAuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    server: CivicAuthorizationServer

    def validate_authorization_request(self) -> str:
        """Authlib's checks (client, exact redirect URI, response type, scope, PKCE), then ours:
        ``authorization_details``, the audience (``resource``), and what the client may hold.
        Errors found after the redirect URI is validated go back to the client (with ``iss``)."""
        redirect_uri: str = super().validate_authorization_request()
        try:
            self.ask = self._validate_ask()
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def _validate_ask(self) -> AuthorizationAsk:
        request = self.request
        client: ClientView = request.client
        data = request.payload.data
        details = rar.parse_authorization_details(
            data.get("authorization_details"), self.server.rt.vault.catalogue, utcnow()
        )
        if details and client.kind != policy.CLIENT_KIND_CITIZEN:
            raise rar.InvalidAuthorizationDetailsError(
                "This client cannot ask for authorization_details."
            )
        scopes = policy.parse_scope(request.scope) | rar.implied_scopes(details)
        if not scopes <= client.scope:
            extra = " ".join(sorted(scopes - client.scope))
            raise InvalidScopeError(f"This client may not ask for: {extra}")
        if (
            client.kind == policy.CLIENT_KIND_CITIZEN
            and not client.first_party
            and scopes & {"vault:read", "vault:append"}
            and not details
        ):
            raise rar.InvalidAuthorizationDetailsError(
                "An app asking for vault:read or vault:append must name the streams in "
                f"authorization_details of type {rar.CONSENT_TYPE}."
            )
        audience = policy.audience_for(scopes, data.get("resource"))
        if details and audience != VAULT_AUDIENCE:
            raise policy.InvalidTargetError("authorization_details are for the vault only.")
        request.scope = policy.format_scope(scopes)
        return AuthorizationAsk(scopes, audience, tuple(details))

    def generate_authorization_code(self) -> str:
        return token_secrets.new_token()

    def save_authorization_code(self, code: str, request: Any) -> None:
        subject: Subject = request.user
        client: ClientView = request.client
        ask: AuthorizationAsk = self.ask
        now = utcnow()
        data = request.payload.data
        root = subject.root_secret if subject.token_kind == policy.TOKEN_KIND_CITIZEN else None
        self.server.session.add(
            OAuthAuthorizationCode(
                digest=token_secrets.token_digest(code),
                family_id=subject.family_id or "",
                client_id=client.client_id,
                redirect_uri=data["redirect_uri"],
                scope=policy.format_scope(ask.scopes),
                audience=ask.audience,
                authorization_details=_json(subject.authorization_details),
                token_kind=subject.token_kind,
                citizen_id=subject.citizen_id,
                staff_id=subject.staff_id,
                department_id=subject.department_id,
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                root_wrapped=None if root is None else token_secrets.wrap_for_token(code, root),
                created_at=now,
                expires_at=now + timedelta(seconds=self.server.rt.config.code_ttl),
            )
        )
        self.server.session.flush()

    def query_authorization_code(self, code: str, client: ClientView) -> CodeView | None:
        try:
            digest = token_secrets.token_digest(code)
        except token_secrets.TokenFormatError:
            return None
        row = repo.code_by_digest(self.server.session, digest, for_update=True)
        if row is None:
            return None
        now = utcnow()
        if row.used_at is not None:
            # Replay: revoke everything issued from this code (RFC 6749 §4.1.2).
            repo.revoke_family(self.server.session, row.family_id, now)
            return None
        if row.client_id != client.client_id or row.expires_at <= now:
            return None
        root = None
        if row.root_wrapped is not None:
            try:
                root = token_secrets.unwrap_for_token(code, row.root_wrapped)
            except token_secrets.TokenFormatError:
                return None
        return CodeView(row, root)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        _check_resource(self.request, self.request.authorization_code.row.audience)

    def delete_authorization_code(self, authorization_code: CodeView) -> None:
        row = authorization_code.row
        row.used_at = utcnow()
        row.root_wrapped = None
        self.server.session.add(row)
        self.server.session.flush()

    def authenticate_user(self, authorization_code: CodeView) -> Subject | None:
        subject = _subject_of(authorization_code.row, authorization_code.root_secret)
        return subject if _subject_still_exists(self.server, subject) else None

    def generate_token(
        self,
        user: Subject | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        if user is None:
            raise InvalidGrantError("There is no subject for this code.")
        return self.server.issuer.issue(
            self.request.client,
            user,
            policy.parse_scope(scope),
            new_family=True,
            with_refresh=include_refresh_token,
        )


class CivicRefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: CivicAuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshView | None:
        try:
            digest = token_secrets.token_digest(refresh_token)
        except token_secrets.TokenFormatError:
            return None
        session = self.server.session
        row = repo.refresh_by_digest(session, digest, for_update=True)
        if row is None:
            return None
        now = utcnow()
        if row.used_at is not None:
            # Reuse of a rotated refresh token: someone holds a copy. End the whole family.
            repo.revoke_family(session, row.family_id, now)
            return None
        if row.revoked_at is not None or row.expires_at <= now:
            return None
        client = self.request.client
        if client is not None and row.client_id != client.client_id:
            return None
        family = repo.family(session, row.family_id, for_update=True)
        if family is None or family.revoked_at is not None or family.expires_at <= now:
            return None
        root = None
        if row.session_key is not None:
            try:
                root = token_secrets.unwrap_for_token(refresh_token, row.session_key)
            except token_secrets.TokenFormatError:
                return None
        return RefreshView(row, family, root)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        _check_resource(self.request, self.request.refresh_token.family.audience)

    def authenticate_user(self, refresh_token: RefreshView) -> Subject | None:
        subject = _subject_of(refresh_token.family, refresh_token.root_secret)
        return subject if _subject_still_exists(self.server, subject) else None

    def issue_token(self, user: Subject, refresh_token: RefreshView) -> dict[str, Any]:
        scope = self.request.payload.scope or refresh_token.family.scope
        return self.server.issuer.issue(
            self.request.client,
            user,
            policy.parse_scope(scope),
            family=refresh_token.family,
            with_refresh=True,
        )

    def revoke_old_credential(self, refresh_token: RefreshView) -> None:
        row = refresh_token.row
        row.used_at = utcnow()
        row.session_key = None
        self.server.session.add(row)
        self.server.session.flush()


class CivicClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """Department service accounts: a token for their department, aggregation audience only."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    server: CivicAuthorizationServer

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client: ClientView = self.request.client
        if client.kind != policy.CLIENT_KIND_SERVICE or client.is_public:
            raise UnauthorizedClientError(
                "Only department service accounts use client_credentials."
            )

    def generate_token(
        self,
        user: Subject | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        client: ClientView = self.request.client
        scopes = policy.parse_scope(scope) or client.scope
        if not scopes <= client.scope:
            raise InvalidScopeError(
                f"This client may not ask for: {' '.join(sorted(scopes - client.scope))}"
            )
        audience = policy.audience_for(scopes, self.request.form.get("resource"))
        subject = Subject(
            token_kind=policy.TOKEN_KIND_DEPARTMENT,
            audience=audience,
            department_id=client.department_id,
        )
        return self.server.issuer.issue(client, subject, scopes, with_refresh=False)


def _json(details: tuple[dict[str, Any], ...]) -> str:
    return json.dumps(list(details), sort_keys=True, separators=(",", ":"))


def _load(text: str) -> list[dict[str, Any]]:
    value = json.loads(text)
    return value if isinstance(value, list) else []
