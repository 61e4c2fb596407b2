"""Schemathesis over the WHOLE OpenAPI schema, every phase (examples, coverage, fuzzing, stateful),
with a valid token of each kind chosen per operation by the audience and scopes that operation
really requires.

What it proves, on SQLite and on PostgreSQL:

* no request the schema allows (or nearly allows: the coverage phase and negative fuzzing send
  wrong types, missing fields, boundary values, NUL bytes) is answered with a server error;
* every documented answer matches the schema (body and content type);
* ``ignored_auth``: every operation that declares a bearer token and answered 2xx is sent again
  without a token and with a wrong one, and must then refuse (401/403).

Tokens are not guessed: for each route the test reads the audience and scopes that the route's
``require(...)`` gate asks for and offers every token kind that satisfies them (the citizen's own
session, the first-party citizen app, a third-party app with ``authorization_details``, an analyst
and a DPO of the energy department from the console, the department's service account for the
aggregation service and for the vault), cycling through them. A route whose gate cannot be read
fails the test.

The examples phase gets real ids (a stream, a consent, a release, ...) and valid bodies (a batch,
a query, a client-credentials grant) added to the schema, so that it reaches past "not found";
the stateful phase chains operations through the links Schemathesis infers.

Bounded: a fixed number of examples per operation and phase (``MAX_EXAMPLES``), a fixed seed.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi.routing import APIRoute
from schemathesis.engine import Status, events
from schemathesis.python import asgi
from test_oauth_helpers import ISSUER, TRIP_DETAILS, AppClient, Harness, harness

from tests.aggregation_support import SIZE_CHECK_SHARE, SMALL, publish_city, resident
from tests.conftest import DEFAULT_PASSPHRASE
from vault.clock import utcnow
from vault.principal import VAULT_AUDIENCE
from vault.rate_limits import VARIABLES
from vault.services import session_tokens
from vault.settings import Settings

#: The bound: examples per operation and phase, steps per stateful scenario (each phase runs
#: once). One run takes about 30 s on SQLite here, more on PostgreSQL.
MAX_EXAMPLES = 25
MAX_STATEFUL_STEPS = 6
SEED = 20260701

CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "content_type_conformance",
    "ignored_auth",
)


@dataclass(frozen=True)
class TokenKind:
    name: str
    audience: str
    scopes: frozenset[str]
    token: str


@dataclass
class World:
    oauth: Harness
    kinds: list[TokenKind]
    department_client: AppClient
    #: path parameter -> a real id (offered to the examples phase next to generated ones)
    ids: dict[str, str]
    #: method, path -> the token kinds that fit the route's gate
    fitting: dict[tuple[str, str], list[TokenKind]] = field(default_factory=dict)


#: A query the small-groups energy request allows (examples phase of the query routes).
EXAMPLE_QUERY: dict[str, Any] = {
    "department": "energy",
    "purpose": "energy-planning",
    "dataset": "energy.consumption",
    "select": [{"stat": "count"}, {"stat": "sum", "field": "kwh"}],
    "group_by": ["district"],
    "epsilon": 4.0,  # with SIZE_CHECK_SHARE, the noisy size check is precise (see there)
}
EXAMPLE_ROWS = [{"ts": "2026-03-09T00:00:00Z", "kwh": 7.25}]

VAULT_SCOPES = frozenset({"vault:read", "vault:append", "consent:read", "consent:manage"})


def _gate_of(route: APIRoute) -> tuple[str, frozenset[str]] | None:
    """(audience, scopes) asked for by the route's ``vault.api.deps.require`` gate, if it has one;
    for a route that checks its token itself (``deps.admit_request``), the scopes its OpenAPI
    operation declares (``deps.bearer_security``; the vault's audience)."""
    declared = (route.openapi_extra or {}).get("security")
    if declared:
        return VAULT_AUDIENCE, frozenset(
            s for requirement in declared for s in requirement["HTTPBearer"]
        )
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        call = dep.call
        if call is not None and getattr(call, "__qualname__", "").startswith("require."):
            cells = dict(
                zip(call.__code__.co_freevars, (c.cell_contents for c in call.__closure__ or ()))
            )
            return cells["audience"], frozenset(cells["needed"])
        stack.extend(dep.dependencies)
    return None


def _api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every API route with its full path (FastAPI keeps included routers as nested objects)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            inner = prefix + route.include_context.prefix
            yield from _api_routes(route.original_router.routes, inner)


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    extra = {"CIVIC_AGGREGATION_SIZE_CHECK_SHARE": SIZE_CHECK_SHARE}
    # Rate limits off: this run is about answers, not about throttling (test_rate_limits.py).
    extra |= {name: "off" for name in VARIABLES}
    settings = dataclasses.replace(settings, extra=extra)
    with harness(settings) as oauth:
        publish_city(oauth.http)
        people = [
            resident(oauth.http, f"res{i}", "Old Town", [3.0 + i, 4.5, 6.25]) for i in range(3)
        ]
        alice = people[0].citizen
        alice.append(
            "mobility.trip",
            [{"ts": "2026-03-01T08:00:00Z", "mode": "bike", "km": 2.0, "minutes": 9}],
        )
        app = oauth.register_app(owner=alice)
        app_token = oauth.tokens(
            app, alice.handle, details=[{**TRIP_DETAILS[0], "actions": ["read", "append"]}]
        )
        first_party = oauth.tokens(
            oauth.first_party_app(),
            alice.handle,
            scope=" ".join(sorted(VAULT_SCOPES)),
            details=None,
        )
        console = oauth.console_app()
        oauth.staff("ana.lyst")
        analyst = oauth.tokens(console, "ana.lyst", scope="aggregate:query", details=None)
        oauth.staff("dee.pio", role="dpo")
        dpo = oauth.tokens(
            console, "dee.pio", scope="aggregate:query department:admin", details=None
        )
        dept = oauth.department_client()
        dept_agg = oauth.token(dept, {"grant_type": "client_credentials"}).json()
        dept_vault = oauth.token(
            dept,
            {
                "grant_type": "client_credentials",
                "scope": "department:admin",
                "resource": VAULT_AUDIENCE,
            },
        ).json()
        tokens = {
            "citizen-session": alice.token,
            "citizen-app": first_party["access_token"],
            "third-party-app": app_token["access_token"],
            "analyst": analyst["access_token"],
            "dpo": dpo["access_token"],
            "department": dept_agg["access_token"],
            "department-vault": dept_vault["access_token"],
        }
        with oauth.rt.vault.reading() as session:  # what each token really carries
            kinds = []
            for name, token in tokens.items():
                principal = session_tokens.resolve(session, token)
                kinds.append(TokenKind(name, principal.audience, principal.scopes, token))
        agg = oauth.app.state.aggregation
        with agg.vault.unit_of_work() as session:
            agg.ledger.set_department_limit(session, "energy", 1000.0, "dpo", utcnow())
        release = oauth.http.post(
            "/v1/queries",
            json=EXAMPLE_QUERY,
            headers={"Authorization": f"Bearer {analyst['access_token']}"},
        )
        assert release.status_code == 201, release.text
        ids = {
            "stream_id": alice.stream("energy.consumption"),
            "consent_id": people[1].consent_id or "",
            "request_id": SMALL,
            "department_id": "energy",
            "release_id": release.json()["release_id"],
            "client_id": app.client_id,
        }
        world = World(oauth, kinds, dept, ids)
        for path, route in _api_routes(oauth.app.routes):
            gate = _gate_of(route)
            if gate is None:
                continue
            audience, needed = gate
            for method in route.methods or ():
                world.fitting[(method, path)] = [
                    k for k in kinds if k.audience == audience and needed <= k.scopes
                ]
        yield world


def _routes_without_a_fitting_token(world: World) -> list[str]:
    schema = world.oauth.app.openapi()
    return [
        f"{method.upper()} {path}"
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
        if op.get("security") and not world.fitting.get((method.upper(), path))
    ]


def _with_examples(raw: dict[str, Any], world: World) -> dict[str, Any]:
    """The app's schema plus examples of real ids and of valid bodies, so that the examples phase
    (and the phases that reuse what it learns) reach past "not found" and "invalid"."""
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("post", "/v1/me/streams/{stream_id}/records"): {
            "application/json": EXAMPLE_ROWS,
            "text/csv": "ts,kwh\n2026-03-10,6.5\n",
            "application/x-ndjson": '{"ts": "2026-03-11", "kwh": 5.5}\n',
        },
        ("post", "/v1/queries"): {"application/json": EXAMPLE_QUERY},
        ("post", "/v1/queries:preview"): {"application/json": EXAMPLE_QUERY},
        ("put", "/v1/departments/{department_id}/budget"): {
            "application/json": {"epsilon_per_month": 500}
        },
        ("post", "/oauth/token"): {
            "application/x-www-form-urlencoded": {"grant_type": "client_credentials"}
        },
        ("post", "/oauth/register"): {
            "application/json": {
                "client_name": "Trip Diary",
                "redirect_uris": ["https://trips.example/callback"],
            }
        },
    }
    for path, ops in raw["paths"].items():
        for method, op in ops.items():
            for parameter in op.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in world.ids:
                    parameter["example"] = world.ids[parameter["name"]]
            for media, example in bodies.get((method, path), {}).items():
                op["requestBody"]["content"][media]["example"] = example
    return raw


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "base-url": ISSUER,
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "mode": "all",  # valid and invalid data
                "allow-x00": True,
                "database": "none",
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": MAX_STATEFUL_STEPS},
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        }
    )


@dataclass
class Outcome:
    failures: list[str] = field(default_factory=list)
    #: operation -> status -> answers
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    phases: set[str] = field(default_factory=set)
    tokens_used: Counter[str] = field(default_factory=Counter)

    def table(self) -> str:
        return "\n".join(
            f"  {label}: {dict(sorted(self.statuses[label].items()))}"
            for label in sorted(self.statuses)
        )


def _run(world: World) -> Outcome:
    # Export bundles are zips and NDJSON batches are text: send generated values as they are.
    schemathesis.serializer.alias("application/zip", "application/octet-stream")
    schemathesis.serializer.alias("application/x-ndjson", "text/plain")
    schema = schemathesis.openapi.from_dict(
        _with_examples(copy.deepcopy(world.oauth.app.openapi()), world), config=_config()
    )
    schema.app = world.oauth.app
    schema.location = "/openapi.json"

    outcome = Outcome()
    cycles: dict[tuple[str, str], Iterator[TokenKind]] = {
        key: itertools.cycle(kinds) for key, kinds in world.fitting.items() if kinds
    }
    special = _special_auth(world)

    @schema.auth(refresh_interval=None)
    class PerOperationToken:
        """The credentials each operation asks for (a fresh choice for every case)."""

        def get(self, case: Any, ctx: Any) -> dict[str, str] | None:
            key = (case.operation.method.upper(), case.operation.path)
            if key in special:
                return special[key]()
            cycle = cycles.get(key)
            if cycle is None:
                return None  # a public operation
            kind = next(cycle)
            outcome.tokens_used[kind.name] += 1
            return {"Authorization": f"Bearer {kind.token}"}

        def set(self, case: Any, data: dict[str, str] | None, ctx: Any) -> None:
            if data:
                case.headers = {**(case.headers or {}), **data}

    try:
        for event in schemathesis.engine.from_schema(schema).execute():
            _collect(event, outcome)
    finally:
        # Schemathesis started the app's lifespan (its background loops) for itself: end it
        # while the database is still there.
        asgi.shutdown_lifespans()
    return outcome


def _collect(event: Any, outcome: Outcome) -> None:
    if isinstance(event, events.ScenarioFinished):
        recorder = event.recorder
        for case_id, interaction in recorder.interactions.items():
            if interaction.response is not None and case_id in recorder.cases:
                label = recorder.cases[case_id].value.operation.label
                outcome.statuses[label][interaction.response.status_code] += 1
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.failure_info is not None:
                    failure = check.failure_info.failure
                    operation = recorder.cases[case_id].value.operation.label
                    outcome.failures.append(
                        f"[{event.phase.value}] {operation}: {check.name}: {failure.title}\n"
                        f"{failure.message[:600]}\n{check.failure_info.code_sample[:1200]}"
                    )
    elif isinstance(event, events.PhaseFinished) and event.status == Status.SUCCESS:
        outcome.phases.add(event.phase.name.value)
    elif isinstance(event, events.NonFatalError):
        outcome.failures.append(f"[error] {event.label}: {event.info.title}: {event.info.message}")
    elif isinstance(event, events.FatalError):
        outcome.failures.append(f"[fatal] {event.exception!r}")


def _special_auth(world: World) -> dict[tuple[str, str], Callable[[], dict[str, str] | None]]:
    """Operations outside the ``require`` gate (the OAuth endpoints: client authentication, or
    the registrant's token), and signing out, which would end the token it is sent with."""
    oauth = world.oauth
    client = world.department_client
    basic = base64.b64encode(f"{client.client_id}:{client.client_secret}".encode()).decode()

    def fresh_session() -> dict[str, str]:
        with oauth.rt.vault.unit_of_work() as session:
            signed = oauth.rt.vault.accounts.sign_in(
                session, "res2", DEFAULT_PASSPHRASE, "schemathesis"
            )
        return {"Authorization": f"Bearer {signed.access_token}"}

    citizen = next(k for k in world.kinds if k.name == "citizen-session")
    return {
        ("DELETE", "/v1/session"): fresh_session,
        ("POST", "/oauth/token"): lambda: {"Authorization": f"Basic {basic}"},
        ("POST", "/oauth/introspect"): lambda: {"Authorization": f"Basic {basic}"},
        ("POST", "/oauth/revoke"): lambda: {"Authorization": f"Basic {basic}"},
        ("POST", "/oauth/register"): lambda: {"Authorization": f"Bearer {citizen.token}"},
    }


def test_whole_api_every_phase_with_every_kind_of_token(world: World) -> None:
    # A protected route whose gate cannot be read (or that no token kind fits) would go untested.
    assert not _routes_without_a_fitting_token(world)
    outcome = _run(world)
    report = f"tokens used: {dict(outcome.tokens_used)}\nanswers:\n{outcome.table()}"
    assert not outcome.failures, "\n\n".join(outcome.failures[:30]) + "\n\n" + report
    # The run really went everywhere, with every phase and every kind of token.
    assert {"examples", "coverage", "fuzzing", "stateful"} <= outcome.phases, outcome.phases
    assert set(outcome.tokens_used) == {k.name for k in world.kinds}, report
    in_schema = {
        f"{method.upper()} {path}"
        for path, ops in world.oauth.app.openapi()["paths"].items()
        for method in ops
    }
    assert in_schema <= set(outcome.statuses), report
    # ... and past the front door: each kind of success the API gives was seen.
    succeeded = {
        label for label, counts in outcome.statuses.items() if any(200 <= s < 300 for s in counts)
    }
    for label in (
        "POST /v1/me/streams/{stream_id}/records",
        "POST /v1/queries",
        "POST /v1/queries:preview",
        "GET /v1/queries/{release_id}",
        "PUT /v1/departments/{department_id}/budget",
        "POST /v1/me/requests/{request_id}/accept",
        "POST /oauth/token",
        "POST /oauth/register",
    ):
        assert label in succeeded, f"{label} never succeeded\n{report}"
