"""Tables of the authorization server. Secrets never appear in them: client secrets, codes and
refresh tokens are stored only as digests (``vault.oauth.clients.secret_digest``,
``vault.crypto.token_secrets.token_digest``), and a citizen's root secret only wrapped under a key
derived from the code or refresh token that carries it (so a database thief can open nothing).

Access tokens are not here: they are rows of the vault's ``access_tokens`` table
(``vault.models.AccessToken``), so that the vault's one token check accepts them unchanged.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from vault.db_types import blob_column, utc_column


class OAuthClient(SQLModel, table=True):
    """A registered client. ``secret_digest`` is ``None`` for public clients (PKCE only).

    ``kind`` says who signs in at the authorization endpoint: ``citizen`` (apps acting for a
    citizen), ``staff`` (the department console) or ``service`` (client credentials, nobody).
    ``first_party`` marks the city's own clients (made by the demo seed or an administrator, never by
    ``/oauth/register``): only a first-party citizen client receives the citizen's session key.
    """

    __tablename__ = "oauth_clients"

    client_id: str = Field(primary_key=True, max_length=64)
    client_name: str = Field(max_length=100)
    kind: str = Field(max_length=16)
    first_party: bool = False
    department_id: str | None = Field(default=None, index=True, max_length=64)
    owner_citizen_id: str | None = Field(default=None, index=True, max_length=32)
    secret_digest: str | None = Field(default=None, max_length=64)
    token_endpoint_auth_method: str = Field(max_length=32)
    redirect_uris: str = "[]"
    grant_types: str = ""
    scope: str = ""
    created_at: datetime = Field(sa_column=utc_column())
    secret_rotated_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    disabled_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class OAuthAuthorization(SQLModel, table=True):
    """One grant family: what a subject approved for one client, and everything issued from it.

    Every access token and refresh token issued under it carries its ``family_id``; revoking the
    family (refresh-token reuse, code replay, the citizen disconnecting the app) revokes them all.
    ``expires_at`` is the absolute end of the family: no refresh outlives it.
    """

    __tablename__ = "oauth_authorizations"

    family_id: str = Field(primary_key=True, max_length=32)
    client_id: str = Field(index=True, max_length=64)
    citizen_id: str | None = Field(default=None, index=True, max_length=32)
    staff_id: str | None = Field(default=None, index=True, max_length=32)
    department_id: str | None = Field(default=None, max_length=64)
    token_kind: str = Field(max_length=32)
    scope: str = ""
    audience: str = Field(max_length=64)
    authorization_details: str = "[]"
    created_at: datetime = Field(sa_column=utc_column())
    last_issued_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column(index=True))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class OAuthAuthorizationCode(SQLModel, table=True):
    """An authorization code, by digest. Single use (``used_at``), short-lived (``expires_at``),
    bound to its client, redirect URI and PKCE challenge. ``root_wrapped`` carries a citizen's root
    secret from sign-in to the code exchange, wrapped under the code (first-party clients only)."""

    __tablename__ = "oauth_authorization_codes"

    digest: str = Field(primary_key=True, max_length=64)
    family_id: str = Field(index=True, max_length=32)
    client_id: str = Field(max_length=64)
    redirect_uri: str
    scope: str = ""
    audience: str = Field(max_length=64)
    authorization_details: str = "[]"
    token_kind: str = Field(max_length=32)
    citizen_id: str | None = Field(default=None, index=True, max_length=32)
    staff_id: str | None = Field(default=None, max_length=32)
    department_id: str | None = Field(default=None, max_length=64)
    code_challenge: str | None = Field(default=None, max_length=128)
    code_challenge_method: str | None = Field(default=None, max_length=8)
    root_wrapped: bytes | None = Field(default=None, sa_column=blob_column(nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column(index=True))
    used_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class OAuthRefreshToken(SQLModel, table=True):
    """A refresh token, by digest. Rotated on every use (``used_at``); presenting a used one again
    revokes its whole family. ``session_key`` is the citizen's root secret wrapped under this
    refresh token (first-party citizen app only)."""

    __tablename__ = "oauth_refresh_tokens"

    digest: str = Field(primary_key=True, max_length=64)
    family_id: str = Field(index=True, max_length=32)
    client_id: str = Field(max_length=64)
    session_key: bytes | None = Field(default=None, sa_column=blob_column(nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column(index=True))
    used_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class StaffAccount(SQLModel, table=True):
    """A department's analyst or data-protection officer. ``password_hash`` is libsodium's
    Argon2id string (salt and cost inside it); the password itself is never stored."""

    __tablename__ = "staff_accounts"

    id: str = Field(primary_key=True, max_length=32)
    handle: str = Field(index=True, unique=True, max_length=64)
    password_hash: str = Field(max_length=256)
    department_id: str = Field(index=True, max_length=64)
    role: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=utc_column())
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    disabled_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class OAuthFormNonce(SQLModel, table=True):
    """The nonces of consent-page form tokens already used, so each form token works once."""

    __tablename__ = "oauth_form_nonces"

    nonce: str = Field(primary_key=True, max_length=32)
    expires_at: datetime = Field(sa_column=utc_column(index=True))
