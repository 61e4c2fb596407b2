"""The decision: allows exactly what the terms allow (against a reference model), is monotone under
narrowing, never allows a withdrawn or expired consent, lists every reason, never raises."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import nacl.signing
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consent.data_catalogue import STATISTICS
from consent.decision import AccessRequest, Decision, decide
from consent.errors import TermsInvalid
from consent.signing import give, verify_signed_terms, withdraw
from consent.terms import ConsentTerms, apply_narrowing, consent_status
from tests.test_consent_support import (
    CATALOGUE,
    CLIENTS,
    DEPARTMENTS,
    DIMENSIONS,
    NOW,
    base_terms,
    narrowing_strategy,
    raw_terms,
    subset,
    terms_strategy,
)

STATUSES = ("given", "renewed", "withdrawn", "expired", "requested", "superseded", "confused")
FIELD_PREFIXES = (
    "status:",
    "at:",
    "recipient_kind:",
    "recipient_id:",
    "purpose:",
    "stream_type:",
    "fields:",
    "operation:",
    "statistics:",
    "group_by:",
    "epsilon:",
)
ALL_FIELDS = sorted({f.name for s in CATALOGUE.streams for f in s.fields})
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------------
# The reference model: written independently of consent.decision, as one boolean expression
# --------------------------------------------------------------------------------------------------


def reference_allows(terms: ConsentTerms, status: str, r: AccessRequest) -> bool:
    """True exactly when every part of the request is within the terms."""
    if status not in ("given", "renewed"):
        return False
    if r.at.tzinfo is None:
        return False
    if not terms.validity.not_before <= r.at < terms.validity.not_after:
        return False
    if (r.recipient_kind, r.recipient_id) not in {(x.kind, x.id) for x in terms.recipients}:
        return False
    if r.purpose not in {p.id for p in terms.purposes}:
        return False
    covered = {c.stream_type: set(c.fields) for c in terms.data_categories}
    if r.stream_type not in covered or not r.fields or not set(r.fields) <= covered[r.stream_type]:
        return False
    if terms.processing.mode == "dp_aggregate":
        assert terms.dp_limits is not None
        return (
            r.operation == "dp_aggregate"
            and len(r.statistics) > 0
            and set(r.statistics) <= set(terms.statistics)
            and set(r.group_by) <= set(terms.group_by)
            and math.isfinite(r.epsilon)
            and 0 < r.epsilon <= terms.dp_limits.epsilon_per_period
        )
    operations = {"raw_read"} | ({"append"} if terms.processing.append else set())
    return (
        r.operation in operations
        and (r.recipient_kind, r.recipient_id) == ("client", terms.processing.app)
        and not r.statistics
        and not r.group_by
        and r.epsilon == 0
    )


@st.composite
def request_strategy(draw: st.DrawFn, terms: ConsentTerms) -> AccessRequest:
    """Requests that are often within the terms and often just outside, in every field."""
    inside = draw(st.booleans())
    recipients = [(r.kind, r.id) for r in terms.recipients]
    universe = [("department", d) for d in DEPARTMENTS] + [("client", c) for c in CLIENTS]
    kind, rid = draw(st.sampled_from(recipients if inside else universe + [("analyst", "x")]))
    purposes = list(terms.purpose_ids)
    purpose = draw(
        st.sampled_from(purposes if inside else [*purposes, "marketing", "noise-mapping"])
    )
    category = draw(st.sampled_from(terms.data_categories))
    stream = (
        category.stream_type
        if inside
        else draw(st.sampled_from([category.stream_type, "energy.consumption", "profile", "nope"]))
    )
    fields = tuple(
        draw(subset(category.fields, 1) if inside else subset([*category.fields, *ALL_FIELDS]))
    )
    dp = terms.processing.mode == "dp_aggregate"
    if inside:
        operation = (
            "dp_aggregate"
            if dp
            else draw(
                st.sampled_from(["raw_read", "append"] if terms.processing.append else ["raw_read"])
            )
        )
    else:
        operation = draw(st.sampled_from(["dp_aggregate", "raw_read", "append", "delete"]))
    limit = terms.dp_limits.epsilon_per_period if terms.dp_limits else 1.0
    if operation == "dp_aggregate" and inside:
        statistics = tuple(draw(subset(terms.statistics, 1)))
        group_by = tuple(draw(subset(terms.group_by)))
        epsilon = draw(st.floats(min_value=limit / 1000, max_value=limit))
    else:
        statistics = tuple(draw(subset([*STATISTICS, "median"]).map(lambda xs: xs[:3])))
        group_by = tuple(draw(subset([*DIMENSIONS, "household_size"]).map(lambda xs: xs[:2])))
        epsilon = draw(
            st.sampled_from([0.0, limit, limit * 1.5, limit / 2, -1.0, math.nan, math.inf])
        )
    nb, na = terms.validity.not_before, terms.validity.not_after
    span = na - nb
    at = draw(
        st.sampled_from(
            [
                nb,
                nb + span / 2,
                na - timedelta(microseconds=1),
                nb - timedelta(seconds=1),
                na,
                na + timedelta(days=1),
                (nb + span / 2).replace(tzinfo=None),
            ]
            if not inside
            else [nb, nb + span / 3, na - timedelta(microseconds=1)]
        )
    )
    return AccessRequest(
        recipient_kind=kind,
        recipient_id=rid,
        purpose=purpose,
        stream_type=stream,
        fields=fields,
        operation=operation,
        statistics=statistics,
        group_by=group_by,
        epsilon=epsilon,
        at=at,
    )


def check_reasons(decision: Decision) -> None:
    if decision.allowed:
        assert decision.reasons == ()
    else:
        assert decision.reasons, "a deny must say why"
        for reason in decision.reasons:
            assert reason.startswith(FIELD_PREFIXES), reason


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------


@PROPERTY
@given(st.data())
def test_decision_matches_the_reference_model(data: st.DataObject) -> None:
    terms = data.draw(terms_strategy())
    status = data.draw(st.sampled_from(STATUSES[:2]) | st.sampled_from(STATUSES))
    request = data.draw(request_strategy(terms))
    decision = decide(terms, status, request)
    assert decision.allowed == reference_allows(terms, status, request), decision.reasons
    check_reasons(decision)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_narrowing_never_turns_a_deny_into_an_allow(data: st.DataObject) -> None:
    terms = data.draw(terms_strategy())
    narrowing = data.draw(narrowing_strategy(terms))
    try:
        narrowed = apply_narrowing(terms, narrowing)
    except TermsInvalid:
        assume(False)  # e.g. not_after pulled before not_before: no terms to compare
        return
    request = data.draw(st.one_of(request_strategy(narrowed), request_strategy(terms)))
    status = data.draw(st.sampled_from(["given", "renewed"]))
    if decide(narrowed, status, request).allowed:
        assert decide(terms, status, request).allowed


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_withdrawn_or_expired_consent_never_allows(data: st.DataObject) -> None:
    terms = data.draw(terms_strategy())
    request = data.draw(request_strategy(terms))
    for status in ("withdrawn", "expired", "superseded", "requested"):
        decision = decide(terms, status, request)
        assert not decision.allowed
        assert any(r.startswith("status:") for r in decision.reasons)
    # expired by the clock: at or after not_after nothing is allowed, whatever the status says
    late = request.model_copy(
        update={
            "at": terms.validity.not_after + timedelta(seconds=data.draw(st.integers(0, 10**8)))
        }
    )
    assert not decide(terms, "given", late).allowed
    assert consent_status(terms, [], late.at) == "expired"


@settings(max_examples=100, deadline=None)
@given(
    st.text(max_size=5),
    st.text(max_size=5),
    st.lists(st.text(max_size=4), max_size=3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.text(max_size=8),
)
def test_the_decision_is_total(
    kind: str, operation: str, fields: list[str], epsilon: float, at: datetime, status: str
) -> None:
    request = AccessRequest(
        recipient_kind=kind,
        recipient_id=kind,
        purpose=operation,
        stream_type=operation,
        fields=tuple(fields),
        operation=operation,
        statistics=tuple(fields),
        group_by=tuple(fields),
        epsilon=epsilon,
        at=at,
    )
    decision = decide(base_terms(), status, request)
    assert not decision.allowed
    check_reasons(decision)


# --------------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------------


def _request(**overrides: Any) -> AccessRequest:
    values: dict[str, Any] = {
        "recipient_kind": "department",
        "recipient_id": "energy",
        "purpose": "energy-planning",
        "stream_type": "energy.consumption",
        "fields": ("kwh",),
        "operation": "dp_aggregate",
        "statistics": ("sum",),
        "group_by": (),
        "epsilon": 0.5,
        "at": NOW + timedelta(days=1),
    }
    values.update(overrides)
    return AccessRequest(**values)


def test_an_allowed_release_carries_its_limits() -> None:
    terms = base_terms()
    decision = decide(terms, "given", _request())
    assert decision.allowed and decision.reasons == () and decision.limits == terms.dp_limits


def test_a_deny_lists_every_reason_naming_each_field() -> None:
    decision = decide(
        base_terms(),
        "withdrawn",
        _request(
            recipient_id="mobility",
            purpose="marketing",
            fields=("kwh", "cost"),
            statistics=("sum", "histogram"),
            group_by=("district",),
            epsilon=3.0,
            at=NOW - timedelta(days=1),
        ),
    )
    assert not decision.allowed
    prefixes = [r.split(":", 1)[0] for r in decision.reasons]
    assert prefixes == [
        "status",
        "at",
        "recipient_id",
        "purpose",
        "fields",
        "statistics",
        "group_by",
        "epsilon",
    ]
    assert "'cost'" in decision.reasons[4] and "'histogram'" in decision.reasons[5]


@pytest.mark.parametrize(
    ("overrides", "prefix"),
    [
        ({"stream_type": "mobility.trip"}, "stream_type"),
        ({"fields": ()}, "fields"),
        ({"operation": "raw_read", "statistics": (), "epsilon": 0}, "operation"),
        ({"operation": "erase"}, "operation"),
        ({"statistics": ()}, "statistics"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": math.nan}, "epsilon"),
        ({"epsilon": 1.0000001}, "epsilon"),
        ({"at": datetime(2026, 7, 1)}, "at"),
        ({"at": NOW + timedelta(days=365)}, "at"),
        ({"recipient_kind": "app"}, "recipient_kind"),
        ({"recipient_kind": "client"}, "recipient_id"),
    ],
)
def test_each_way_out_of_the_terms_is_named(overrides: dict[str, Any], prefix: str) -> None:
    decision = decide(base_terms(), "given", _request(**overrides))
    assert not decision.allowed
    assert any(r.startswith(prefix + ":") for r in decision.reasons), decision.reasons


def test_raw_access_only_for_the_named_app() -> None:
    terms = raw_terms(append=False)
    read = _request(
        recipient_kind="client",
        recipient_id="meter-app",
        operation="raw_read",
        statistics=(),
        epsilon=0,
    )
    assert decide(terms, "given", read).allowed
    assert not decide(terms, "given", read.model_copy(update={"operation": "append"})).allowed
    assert decide(
        raw_terms(append=True), "given", read.model_copy(update={"operation": "append"})
    ).allowed
    other = decide(terms, "given", read.model_copy(update={"recipient_id": "trip-diary"}))
    assert not other.allowed and any(r.startswith("recipient_id:") for r in other.reasons)
    stats = decide(
        terms,
        "given",
        read.model_copy(
            update={"operation": "dp_aggregate", "statistics": ("count",), "epsilon": 0.1}
        ),
    )
    assert not stats.allowed and any(r.startswith("operation:") for r in stats.reasons)
    # a statistics-only consent never lets anyone read records
    dp = decide(base_terms(), "given", _request(operation="raw_read", statistics=(), epsilon=0))
    assert not dp.allowed


def test_verified_terms_and_the_status_history() -> None:
    key = nacl.signing.SigningKey(bytes(32))
    terms = base_terms()
    signed, given_event = give(terms, key, NOW)
    when = NOW + timedelta(days=1)
    verified = verify_signed_terms(signed, bytes(key.verify_key), when, [given_event])
    assert decide(verified, "given", _request()).allowed
    # the caller's status and the verified status must both be valid
    assert not decide(verified, "withdrawn", _request()).allowed
    history = [given_event, withdraw(terms, key, when)]
    assert consent_status(terms, [e.event for e in history], when) == "withdrawn"
    assert not decide(
        terms, consent_status(terms, [e.event for e in history], when), _request()
    ).allowed


def test_an_unexpected_error_is_a_deny() -> None:
    class Broken:
        terms = property(lambda self: 1 / 0)

    decision = decide(Broken(), "given", _request())  # type: ignore[arg-type]
    assert not decision.allowed and decision.reasons[0].startswith("request:")


def test_now_is_never_read() -> None:
    # Same inputs, same answer, whatever the real clock says: the decision takes the time it uses.
    request = _request(at=datetime(2026, 6, 16, tzinfo=UTC))
    assert decide(base_terms(), "given", request) == decide(base_terms(), "given", request)
