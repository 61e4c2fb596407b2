"""Who is calling: the result of checking a bearer token, handed to services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vault.crypto.root_keys import RootKeys

#: RFC 8707 resource indicators (absolute URIs): a token is issued for one of them and refused by the other.
VAULT_AUDIENCE = "urn:civic-vault:vault"
AGGREGATION_AUDIENCE = "urn:civic-vault:aggregation"

#: Scopes a citizen's own session token carries (the first-party app, the citizen's scripts).
CITIZEN_SESSION_SCOPES = frozenset({"vault:read", "vault:append", "consent:read", "consent:manage"})


@dataclass(frozen=True)
class Principal:
    kind: str  # "citizen" (own session or first-party app), "app", "department", "analyst"
    token_digest: str
    scopes: frozenset[str]
    audience: str
    citizen_id: str | None = None
    client_id: str | None = None
    department_id: str | None = None
    authorization_details: tuple[dict[str, Any], ...] = ()
    #: Opens the citizen's root keys (only a citizen's own session can); called when a route needs
    #: them, so that routes that only append pay nothing for it.
    unlock: Callable[[], RootKeys] | None = field(default=None, repr=False, compare=False)

    @property
    def root_keys(self) -> RootKeys | None:
        return None if self.unlock is None else self.unlock()

    @property
    def actor(self) -> str:
        """How this principal is named in audit entries (pseudonymous ids only)."""
        if self.kind == "citizen":
            return "citizen"
        return f"{self.kind}:{self.client_id or '?'}"
