"""Request dependencies: the runtime, the caller's address, and the one token check."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vault.crypto.root_keys import RootKeys
from vault.errors import DomainError, Forbidden, Unauthenticated
from vault.oauth.enforcement import deny_apps
from vault.principal import VAULT_AUDIENCE, Principal
from vault.repositories import write_path
from vault.runtime import VaultRuntime
from vault.services import session_tokens

_bearer = HTTPBearer(auto_error=False, description="A Civic Vault access token")


class InsufficientScope(DomainError):
    code = "insufficient_scope"


# Cheap dependencies are ``async`` so that FastAPI does not hop to a worker thread for them.
async def runtime(request: Request) -> VaultRuntime:
    value: VaultRuntime = request.app.state.vault
    return value


async def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


Runtime = Annotated[VaultRuntime, Depends(runtime)]
ClientAddress = Annotated[str, Depends(client_address)]


def require(*scopes: str, audience: str = VAULT_AUDIENCE) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits only a live token for ``audience`` carrying every scope in ``scopes``.

    It is the single gate in front of every protected route; OAuth tokens pass through it too.
    It is ``async`` (see :func:`resolve_bearer`), so a route does not pay a worker thread for it.
    """
    needed = frozenset(scopes)

    async def _check(
        rt: Runtime,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        token = credentials.credentials if credentials is not None else None
        return await admit(rt, token, needed, audience)

    return _check


def bearer_security(scopes: frozenset[str]) -> list[dict[str, list[str]]]:
    """What a route that calls :func:`admit_request` itself declares as its OpenAPI operation's
    ``security``: the bearer token that :func:`require` declares, with the scopes it needs (OpenAPI
    3.1 lets a non-OAuth scheme name them)."""
    return [{"HTTPBearer": sorted(scopes)}]


async def admit_request(
    request: Request, needed: frozenset[str], audience: str = VAULT_AUDIENCE
) -> Principal:
    """:func:`require`'s check called from inside a route, for the busiest route (appends), where
    FastAPI's dependency resolution costs more than the check itself (docs/performance.md). The
    route declares :func:`bearer_security` in its OpenAPI operation."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    usable = scheme.lower() == "bearer" and token.strip() != ""
    rt: VaultRuntime = request.app.state.vault
    return await admit(rt, token.strip() if usable else None, needed, audience)


async def admit(
    rt: VaultRuntime, token: str | None, needed: frozenset[str], audience: str
) -> Principal:
    """The one token check: a live token (``None``: none was sent) for ``audience`` carrying every
    scope in ``needed``, or the error that says which of these it is not."""
    if token is None:
        raise Unauthenticated("sign in first: send 'Authorization: Bearer <access token>'")
    principal = await resolve_bearer(rt, token)
    if principal.audience != audience:
        raise Unauthenticated(
            "this access token was issued for another service",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    missing = needed - principal.scopes
    if missing:
        raise InsufficientScope(
            f"this access token lacks the scope(s): {', '.join(sorted(missing))}",
            headers={
                "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{" ".join(sorted(needed))}"'
            },
        )
    return principal


async def resolve_bearer(rt: VaultRuntime, token: str) -> Principal:
    """The principal behind a bearer token (``Unauthenticated`` if none).

    On a SQLite file the token row is read right here on the event loop (``rt.local_reads``): a
    one-row read costs far less than handing it to a worker thread. Elsewhere it is read in one.
    """
    reader = rt.local_reads
    if reader is not None:
        lookup = functools.partial(write_path.token_by_digest_locally, reader)
        return session_tokens.resolve_with(lookup, token)

    def _resolve() -> Principal:
        with rt.reading() as session:
            return session_tokens.resolve(session, token)

    return await run_in_threadpool(_resolve)


def stream_citizen_id(principal: Principal) -> str:
    """For the stream routes: a token acting for a citizen, apps included (each stream route then
    checks the app's ``authorization_details`` for the stream type and action)."""
    if principal.citizen_id is None:
        raise Forbidden("this route is for citizens; this token does not act for one")
    return principal.citizen_id


def citizen_id_of(principal: Principal) -> str:
    """For every other route about a citizen's own vault (profile, audit, consents, export,
    account): the citizen's own session or first-party app, never a third-party app."""
    deny_apps(principal)
    return stream_citizen_id(principal)


def citizen_with_keys(principal: Principal) -> tuple[str, RootKeys]:
    """For routes that open the citizen's own data: the token must be the citizen's own session."""
    if principal.citizen_id is None or principal.root_keys is None:
        raise Forbidden("only the citizen's own session can do this")
    return principal.citizen_id, principal.root_keys
