"""The one place in the code base that decides consent.

:func:`decide` takes terms, their status and an :class:`AccessRequest` (who, which department or
client, which purpose, which stream and fields, which operation and statistics, which grouping,
what epsilon, when) and returns a :class:`Decision`: allowed or not, with every reason.

Properties (checked by ``tests/test_consent_decision.py`` against an independent reference model):

* **Allows only within the terms.** It allows exactly when every part of the request is within the
  terms: the status is ``given`` or ``renewed``; ``at`` is an aware time with
  ``not_before <= at < not_after``; the recipient is listed; the purpose is listed; the stream type
  is covered and every requested field is among its covered fields (at least one field); the
  operation is one the processing permits (``dp_aggregate`` for statistics-only terms; ``raw_read``,
  and ``append`` if allowed, for the one named app of raw terms); for ``dp_aggregate`` at least
  one statistic, every statistic and grouping dimension allowed, and ``0 < epsilon <=
  epsilon_per_period``; for raw operations no statistic, no grouping and ``epsilon == 0``.
* **Monotone.** Narrowing the terms never turns a deny into an allow; a withdrawn, expired,
  superseded or merely requested consent never allows.
* **Every reason.** A deny lists every failed check, each in plain words naming the request field
  (``purpose: ...``, ``fields: ...``), in a fixed order.
* **Pure and total.** No I/O, no clock, no exceptions: odd input (a naive time, ``NaN`` epsilon, an
  unknown operation or status) is a deny with a reason, and any unexpected error is a deny too
  (fail closed).

Budget accounting is not here: a ledger elsewhere adds up the epsilon of releases per period. The
only static check is that one release asks for no more than ``epsilon_per_period``; the decision
hands the limits the release must also respect (minimum group size, releases per period) back in
:attr:`Decision.limits`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from consent.signing import VerifiedTerms
from consent.terms import VALID_STATUSES, ConsentTerms, DPLimits, Processing, iso_utc

OPERATIONS = ("dp_aggregate", "raw_read", "append")
RECIPIENT_KINDS = ("department", "client")


class AccessRequest(BaseModel):
    """What someone asks to do with a citizen's data.

    Deliberately permissive types (plain strings, any float, any datetime): :func:`decide` judges
    the values, so that odd input becomes a deny with reasons rather than an exception.

    * ``recipient_kind``: ``department`` or ``client``; ``recipient_id``: its id;
    * ``purpose``: a purpose id; ``stream_type`` and ``fields``: what is read;
    * ``operation``: ``dp_aggregate``, ``raw_read`` or ``append``;
    * ``statistics`` and ``group_by``: for ``dp_aggregate``; ``epsilon``: the privacy loss this
      release spends (0 for raw operations); ``at``: when (aware time).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    recipient_kind: str
    recipient_id: str
    purpose: str
    stream_type: str
    fields: tuple[str, ...]
    operation: str
    statistics: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    epsilon: float = 0.0
    at: datetime


@dataclass(frozen=True, slots=True)
class Decision:
    """Allowed or not, with every reason for a deny (``reasons`` is empty when allowed).

    ``limits`` is set for an allowed ``dp_aggregate`` release: the DP limits the release and the
    budget ledger must respect.
    """

    allowed: bool
    reasons: tuple[str, ...]
    limits: DPLimits | None = None


_STATUS_WORDS = {
    "requested": "not given yet (only requested)",
    "withdrawn": "withdrawn by the citizen",
    "expired": "expired",
    "superseded": "replaced by a newer version",
}


def _operations(processing: Processing) -> tuple[str, ...]:
    if processing.mode == "dp_aggregate":
        return ("dp_aggregate",)
    return ("raw_read", "append") if processing.append else ("raw_read",)


def _listed(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(values) if values else "none"


def _status_reasons(status: str, verified_status: str | None) -> list[str]:
    out: list[str] = []
    for value in dict.fromkeys(s for s in (status, verified_status) if s is not None):
        if value not in VALID_STATUSES:
            words = _STATUS_WORDS.get(value, f"in an unknown state {value!r}")
            out.append(f"status: the consent is {words}")
    return out


def _time_reasons(terms: ConsentTerms, at: datetime) -> list[str]:
    if at.tzinfo is None or at.utcoffset() is None:
        return ["at: the request time has no time zone"]
    moment = at.astimezone(UTC)
    nb, na = terms.validity.not_before, terms.validity.not_after
    if moment < nb:
        return [f"at: {iso_utc(moment)} is before the consent starts ({iso_utc(nb)})"]
    if moment >= na:
        return [f"at: {iso_utc(moment)} is after the consent ended ({iso_utc(na)})"]
    return []


def _decide(terms: ConsentTerms, statuses: list[str], request: AccessRequest) -> Decision:
    r = request
    reasons = list(statuses)
    reasons += _time_reasons(terms, r.at)

    if r.recipient_kind not in RECIPIENT_KINDS:
        reasons.append(f"recipient_kind: {r.recipient_kind!r} is neither department nor client")
    recipients = [(x.kind, x.id) for x in terms.recipients]
    if (r.recipient_kind, r.recipient_id) not in recipients:
        listed = ", ".join(f"{k} {i}" for k, i in recipients)
        reasons.append(
            f"recipient_id: {r.recipient_kind} {r.recipient_id!r} is not a recipient "
            f"(recipients: {listed})"
        )

    if r.purpose not in terms.purpose_ids:
        reasons.append(
            f"purpose: {r.purpose!r} is not a purpose of these terms "
            f"(purposes: {_listed(terms.purpose_ids)})"
        )

    category = terms.category(r.stream_type)
    if category is None:
        covered = tuple(c.stream_type for c in terms.data_categories)
        reasons.append(
            f"stream_type: {r.stream_type!r} is not covered (covered: {_listed(covered)})"
        )
    if not r.fields:
        reasons.append("fields: the request names no field")
    elif category is not None:
        for name in dict.fromkeys(r.fields):
            if name not in category.fields:
                reasons.append(
                    f"fields: {name!r} of {r.stream_type} is not covered "
                    f"(covered: {_listed(category.fields)})"
                )

    allowed_ops = _operations(terms.processing)
    if r.operation not in OPERATIONS:
        reasons.append(f"operation: unknown operation {r.operation!r}")
    elif r.operation not in allowed_ops:
        reasons.append(
            f"operation: {r.operation} is not allowed (these terms allow: {_listed(allowed_ops)})"
        )
    elif r.operation != "dp_aggregate" and (
        r.recipient_kind != "client" or r.recipient_id != terms.processing.app
    ):
        reasons.append(
            f"recipient_id: only the app {terms.processing.app!r} may {r.operation.replace('_', ' ')}"
        )

    limits = terms.dp_limits
    if r.operation == "dp_aggregate":
        if not r.statistics:
            reasons.append("statistics: a statistics release must name at least one statistic")
        for stat in dict.fromkeys(r.statistics):
            if stat not in terms.statistics:
                reasons.append(
                    f"statistics: {stat!r} is not allowed (allowed: {_listed(terms.statistics)})"
                )
        for dim in dict.fromkeys(r.group_by):
            if dim not in terms.group_by:
                reasons.append(
                    f"group_by: results may not be split by {dim!r} "
                    f"(allowed: {_listed(terms.group_by)})"
                )
        if not math.isfinite(r.epsilon) or r.epsilon <= 0:
            reasons.append(
                f"epsilon: a release must spend a privacy loss above 0, not {r.epsilon!r}"
            )
        elif limits is not None and r.epsilon > limits.epsilon_per_period:
            reasons.append(
                f"epsilon: {r.epsilon!r} is more than the {limits.epsilon_per_period!r} "
                f"allowed per period ({limits.period})"
            )
    else:
        if r.statistics:
            reasons.append("statistics: raw access computes no statistics")
        if r.group_by:
            reasons.append("group_by: raw access releases no groups")
        if r.epsilon != 0:
            reasons.append(
                f"epsilon: raw access spends no privacy loss; must be 0, not {r.epsilon!r}"
            )

    if reasons:
        return Decision(allowed=False, reasons=tuple(reasons))
    return Decision(
        allowed=True, reasons=(), limits=limits if r.operation == "dp_aggregate" else None
    )


def decide(terms: VerifiedTerms | ConsentTerms, status: str, request: AccessRequest) -> Decision:
    """Allow or deny ``request`` under ``terms`` in ``status`` (see the module docstring).

    ``status`` is authoritative; when ``terms`` are :class:`~consent.signing.VerifiedTerms`, their
    own status must be valid too (both are checked).
    """
    try:
        if isinstance(terms, VerifiedTerms):
            plain, verified_status = terms.terms, str(terms.status)
        else:
            plain, verified_status = terms, None
        return _decide(plain, _status_reasons(str(status), verified_status), request)
    except Exception as exc:  # fail closed: the decision never raises
        return Decision(
            allowed=False,
            reasons=(f"request: could not be checked ({type(exc).__name__}), so it is refused",),
        )
