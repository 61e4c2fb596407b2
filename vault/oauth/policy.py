"""Scopes, audiences and lifetimes of the authorization server, kept as data in one place.

Properties:

* a token is issued for exactly one audience (RFC 8707 resource) and the other service refuses it
  (``vault.api.deps.require`` compares audiences); each scope has a default audience and may be
  issued only for the audiences listed for it (``department:admin``: aggregation by default, the
  vault when ``resource=urn:civic-vault:vault`` is asked for, where departments publish requests);
* a request that mixes scopes of both audiences without naming a ``resource`` is refused, and so is
  a ``resource`` whose audience does not fit the scopes (``invalid_target``);
* lifetimes are explicit and short (RFC 9700 §2.2.2, §4.14): access tokens 10 minutes, codes one
  minute (never more than ten), refresh-token families an absolute 30 days.
"""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidScopeError, OAuth2Error

from vault.principal import AGGREGATION_AUDIENCE, VAULT_AUDIENCE

#: Audiences (RFC 8707 resource indicators) this server issues tokens for.
AUDIENCES = (VAULT_AUDIENCE, AGGREGATION_AUDIENCE)

#: Scope -> its default audience (the one a token gets when no ``resource`` is named).
SCOPE_AUDIENCE: dict[str, str] = {
    "vault:read": VAULT_AUDIENCE,
    "vault:append": VAULT_AUDIENCE,
    "consent:read": VAULT_AUDIENCE,
    "consent:manage": VAULT_AUDIENCE,
    "aggregate:query": AGGREGATION_AUDIENCE,
    "department:admin": AGGREGATION_AUDIENCE,
}
#: Scope -> every audience it may be issued for with an explicit ``resource``: a department
#: administers its data requests in the vault (``/v1/departments/...``) as well as its queries.
SCOPE_AUDIENCES: dict[str, frozenset[str]] = {
    "vault:read": frozenset({VAULT_AUDIENCE}),
    "vault:append": frozenset({VAULT_AUDIENCE}),
    "consent:read": frozenset({VAULT_AUDIENCE}),
    "consent:manage": frozenset({VAULT_AUDIENCE}),
    "aggregate:query": frozenset({AGGREGATION_AUDIENCE}),
    "department:admin": frozenset({AGGREGATION_AUDIENCE, VAULT_AUDIENCE}),
}

#: Scope -> what it lets the app do, completing "This app wants to ...".
SCOPE_WORDS: dict[str, str] = {
    "vault:read": "read data from your vault (only the streams listed below)",
    "vault:append": "add new records to your vault (only the streams listed below)",
    "consent:read": "see the consents you have given",
    "consent:manage": "give and withdraw consents, and manage your account, for you",
    "aggregate:query": "run privacy-protecting statistics for your department",
    "department:admin": "manage your department's data requests",
}

#: The scopes an app registered through ``/oauth/register`` (a third party) may ever be granted:
#: data access only, always narrowed by ``authorization_details``. Not ``consent:read``: the list
#: of a citizen's consents (and so which departments they share with) is theirs alone.
THIRD_PARTY_SCOPES = frozenset({"vault:read", "vault:append"})
#: Scopes of the city's own clients, by client kind.
FIRST_PARTY_CITIZEN_SCOPES = frozenset(
    {"vault:read", "vault:append", "consent:read", "consent:manage"}
)
STAFF_SCOPES_BY_ROLE: dict[str, frozenset[str]] = {
    "analyst": frozenset({"aggregate:query"}),
    "dpo": frozenset({"aggregate:query", "department:admin"}),
}
DEPARTMENT_SERVICE_SCOPES = frozenset({"aggregate:query", "department:admin"})

#: Client kinds: who signs in at the authorization endpoint (or nobody, for services).
CLIENT_KIND_CITIZEN = "citizen"  # apps acting for a citizen (third party, or the citizen app)
CLIENT_KIND_STAFF = "staff"  # the department console: analysts and DPOs sign in
CLIENT_KIND_SERVICE = "service"  # department service accounts: client credentials only
CLIENT_KINDS = (CLIENT_KIND_CITIZEN, CLIENT_KIND_STAFF, CLIENT_KIND_SERVICE)

#: The ``kind`` stored on access-token rows, which ``session_tokens.resolve`` hands on as
#: ``Principal.kind`` unchanged.
#: ``citizen``: the first-party citizen app (carries the session key); ``app``: a third-party app
#: acting for one citizen within its ``authorization_details``; ``analyst``: a staff member through
#: the department console; ``department``: a department service account (client credentials).
TOKEN_KIND_CITIZEN = "citizen"  # noqa: S105 - a kind of token, not a secret
TOKEN_KIND_APP = "app"  # noqa: S105 - a kind of token, not a secret
TOKEN_KIND_ANALYST = "analyst"  # noqa: S105 - a kind of token, not a secret
TOKEN_KIND_DEPARTMENT = "department"  # noqa: S105 - a kind of token, not a secret

#: Audience of the short developer-page session: no API route accepts it.
DEVELOPER_AUDIENCE = "urn:civic-vault:developer"
TOKEN_KIND_DEVELOPER = "developer"  # noqa: S105 - a kind of token, not a secret

#: Default lifetimes, in seconds. ``CIVIC_OAUTH_ACCESS_TTL`` etc. override them (``OAuthConfig``).
ACCESS_TTL = 600
CODE_TTL = 60
MAX_CODE_TTL = 600
REFRESH_IDLE_TTL = 14 * 24 * 3600
REFRESH_ABSOLUTE_TTL = 30 * 24 * 3600
FORM_TTL = 900
DEVELOPER_SESSION_TTL = 1800


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: the requested resource is invalid, unknown, or does not fit the scopes."""

    error = "invalid_target"


def parse_scope(scope: str | None) -> frozenset[str]:
    return frozenset((scope or "").split())


def format_scope(scopes: frozenset[str] | set[str]) -> str:
    return " ".join(sorted(scopes))


def audience_for(scopes: frozenset[str], resource: str | None) -> str:
    """The one audience a token with ``scopes`` is for, given the optional RFC 8707 ``resource``.

    Refuses unknown scopes, an unknown resource, scopes that do not belong to the named resource,
    and (without a resource) scopes of both audiences at once.
    """
    unknown = sorted(s for s in scopes if s not in SCOPE_AUDIENCE)
    if unknown:
        raise InvalidScopeError(f"Unknown scope: {' '.join(unknown)}")
    if not scopes:
        raise InvalidScopeError("Ask for at least one scope (or for authorization_details).")
    if resource is not None:
        if resource not in AUDIENCES:
            raise InvalidTargetError(f"Unknown resource; use one of: {', '.join(AUDIENCES)}")
        foreign = sorted(s for s in scopes if resource not in SCOPE_AUDIENCES[s])
        if foreign:
            raise InvalidTargetError(
                f"Scope(s) {' '.join(foreign)} are not for the resource {resource}"
            )
        return resource
    audiences = {SCOPE_AUDIENCE[s] for s in scopes}
    if len(audiences) > 1:
        raise InvalidTargetError(
            "These scopes are for different services; ask for each with its own 'resource'"
        )
    return audiences.pop()
