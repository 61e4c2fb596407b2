"""Assembling the authorization server from the vault's runtime (called by the composition root,
never at import time), with the two hook slots the consent integration fills.

Configuration (``OAuthConfig.from_settings``) reads, from ``Settings.extra`` until they are real
settings, ``CIVIC_OAUTH_ISSUER`` (the public base URL; default ``http://<host>:<port>``, or
``http://127.0.0.1:<port>`` when listening on every interface), ``CIVIC_OAUTH_ACCESS_TTL``
(default 600), ``CIVIC_OAUTH_CODE_TTL`` (default 60, at most 600) and
``CIVIC_OAUTH_REFRESH_TTL`` (absolute lifetime of a refresh family, default 30 days).

Property: the issuer must be ``https`` (or ``http`` on a loopback host); a server configured
otherwise refuses to start rather than run OAuth over plain HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import jinja2
from sqlmodel import Session

from vault.crypto.passphrase_wrap import KdfCost
from vault.login_throttle import LoginThrottle
from vault.oauth import policy
from vault.oauth.clients import is_loopback, load_or_create_initial_access_token
from vault.oauth.hooks import (
    AppDisconnectedHook,
    ConsentApprovalHook,
)
from vault.oauth.issuance import Lifetimes
from vault.oauth.server import CivicAuthorizationServer
from vault.oauth.staff import StaffAccounts
from vault.runtime import VaultRuntime
from vault.service_keys import load_or_create_key_file
from vault.settings import Settings

FORM_KEY_FILE = "oauth-forms.key"


class OAuthConfigError(ValueError):
    """The OAuth configuration cannot be used (the message names the variable)."""


def _int(extra: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = extra.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise OAuthConfigError(f"{name}={raw!r}: expected a whole number") from exc
    if not low <= value <= high:
        raise OAuthConfigError(f"{name}={raw!r}: must be between {low} and {high}")
    return value


def check_issuer(issuer: str) -> str:
    """``issuer`` without a trailing slash, if it is an https URL or an http loopback URL with no
    query or fragment (RFC 8414 §2); otherwise :class:`OAuthConfigError`."""
    value = issuer.rstrip("/")
    parts = urlsplit(value)
    host = parts.hostname or ""
    secure = parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))
    if not host or not secure or parts.query or parts.fragment or "@" in parts.netloc:
        raise OAuthConfigError(
            f"CIVIC_OAUTH_ISSUER={issuer!r}: must be an https URL (http only on a loopback "
            "address), without query or fragment"
        )
    return value


@dataclass(frozen=True)
class OAuthConfig:
    issuer: str
    access_ttl: int = policy.ACCESS_TTL
    code_ttl: int = policy.CODE_TTL
    refresh_idle_ttl: int = policy.REFRESH_IDLE_TTL
    refresh_absolute_ttl: int = policy.REFRESH_ABSOLUTE_TTL
    form_ttl: int = policy.FORM_TTL
    token_failure_limit: int = 20
    token_failure_window: float = 300.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "issuer", check_issuer(self.issuer))
        if not 0 < self.code_ttl <= policy.MAX_CODE_TTL:
            raise OAuthConfigError(f"code lifetime must be 1 to {policy.MAX_CODE_TTL} seconds")
        if self.access_ttl < 1 or self.refresh_idle_ttl < 1 or self.refresh_absolute_ttl < 1:
            raise OAuthConfigError("token lifetimes must be positive")

    @property
    def lifetimes(self) -> Lifetimes:
        return Lifetimes(self.access_ttl, self.refresh_idle_ttl, self.refresh_absolute_ttl)

    @classmethod
    def from_settings(cls, settings: Settings) -> OAuthConfig:
        extra = settings.extra
        host = settings.host
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming the wildcard, not binding to it
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        issuer = extra.get("CIVIC_OAUTH_ISSUER") or f"http://{host}:{settings.port}"
        return cls(
            issuer=issuer,
            access_ttl=_int(extra, "CIVIC_OAUTH_ACCESS_TTL", policy.ACCESS_TTL, 30, 3600),
            code_ttl=_int(extra, "CIVIC_OAUTH_CODE_TTL", policy.CODE_TTL, 5, policy.MAX_CODE_TTL),
            refresh_absolute_ttl=_int(
                extra, "CIVIC_OAUTH_REFRESH_TTL", policy.REFRESH_ABSOLUTE_TTL, 60, 366 * 24 * 3600
            ),
        )


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("vault.oauth", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


@dataclass
class OAuthRuntime:
    """Everything the authorization server needs; ``consent_approval`` and ``app_disconnected``
    are the hook slots (see ``vault.oauth.hooks``): assign the consent integration's to them."""

    vault: VaultRuntime
    config: OAuthConfig
    form_key: bytes = field(repr=False)
    initial_access_token: str = field(repr=False)
    client_throttle: LoginThrottle
    staff: StaffAccounts
    templates: jinja2.Environment
    consent_approval: ConsentApprovalHook
    app_disconnected: AppDisconnectedHook

    @classmethod
    def build(cls, vault: VaultRuntime, config: OAuthConfig | None = None) -> OAuthRuntime:
        settings = vault.settings
        config = config or OAuthConfig.from_settings(settings)
        return cls(
            vault=vault,
            config=config,
            form_key=load_or_create_key_file(settings.keys_dir / FORM_KEY_FILE),
            initial_access_token=load_or_create_initial_access_token(settings.keys_dir),
            client_throttle=LoginThrottle(
                limit=config.token_failure_limit, window=config.token_failure_window
            ),
            staff=StaffAccounts(
                KdfCost.profile(settings.kdf_profile),
                LoginThrottle(),
                settings.login_free_failures,
                settings.login_max_lockout_seconds,
            ),
            templates=_templates(),
            consent_approval=vault.app_consents,
            app_disconnected=vault.app_consents,
        )

    def server(self, session: Session) -> CivicAuthorizationServer:
        return CivicAuthorizationServer(self, session)
