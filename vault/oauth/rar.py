"""Rich Authorization Requests (RFC 9396) of type ``civic-vault:consent``.

An app asks, for example::

    [{"type": "civic-vault:consent", "stream_types": ["mobility.trip"], "actions": ["append"],
      "purpose": "trip-diary", "validity": {"not_after": "2027-03-01T00:00:00Z"}}]

Properties:

* only that type is accepted; every field is checked (stream types must exist in the vault's
  catalogue, actions are a non-empty subset of ``read``/``append``, the purpose is an identifier,
  ``not_after`` is in the future and within a year); unknown fields are refused; anything else is
  ``invalid_authorization_details`` (RFC 9396 §5);
* details are normalised (sorted, de-duplicated, times in UTC) so that what is shown, approved,
  stored and introspected is the same value;
* :func:`check_within` guarantees that what the approval hook returns never exceeds what was
  requested, so a token never carries more than the citizen approved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error

from vault.catalogue import Catalogue

CONSENT_TYPE = "civic-vault:consent"
ACTIONS = ("read", "append")
ACTION_SCOPES = {"read": "vault:read", "append": "vault:append"}
MAX_DETAILS = 8
MAX_RAW_LENGTH = 8192
MAX_VALIDITY = timedelta(days=366)
_PURPOSE = re.compile(r"^[a-z][a-z0-9-]{1,63}$")
_FIELDS = frozenset({"type", "stream_types", "actions", "purpose", "validity"})
_REQUIRED = ("type", "stream_types", "actions", "purpose")


class InvalidAuthorizationDetailsError(OAuth2Error):  # type: ignore[misc]
    """RFC 9396 §5: the ``authorization_details`` are unknown, malformed or not allowed."""

    error = "invalid_authorization_details"


def _fail(message: str) -> InvalidAuthorizationDetailsError:
    # OAuth error descriptions allow only a restricted ASCII set (RFC 6749 §4.1.2.1).
    safe = "".join(c if 0x20 <= ord(c) <= 0x7E and c not in '"\\' else "?" for c in message)
    return InvalidAuthorizationDetailsError(safe)


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object, where: str) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise _fail(f"{where}: not_after must be an ISO 8601 date and time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _fail(f"{where}: not_after must be an ISO 8601 date and time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _one(raw: object, index: int, catalogue: Catalogue, now: datetime) -> dict[str, Any]:
    where = f"authorization_details[{index}]"
    if not isinstance(raw, dict):
        raise _fail(f"{where} must be an object")
    if raw.get("type") != CONSENT_TYPE:
        raise _fail(f"{where}: unknown type; this server knows only {CONSENT_TYPE}")
    missing = [f for f in _REQUIRED if f not in raw]
    if missing:
        raise _fail(f"{where}: missing {', '.join(missing)}")
    extra = sorted(set(raw) - _FIELDS)
    if extra:
        raise _fail(f"{where}: unknown field(s) {', '.join(extra)}")
    streams = raw["stream_types"]
    if (
        not isinstance(streams, list)
        or not streams
        or len(streams) > 16
        or not all(isinstance(s, str) for s in streams)
    ):
        raise _fail(f"{where}: stream_types must be a non-empty list of stream type names")
    known = set(catalogue.names)
    unknown = sorted({s for s in streams if s not in known})
    if unknown:
        raise _fail(f"{where}: unknown stream type(s) {', '.join(unknown)}")
    actions = raw["actions"]
    if (
        not isinstance(actions, list)
        or not actions
        or not all(isinstance(a, str) and a in ACTIONS for a in actions)
    ):
        raise _fail(f"{where}: actions must be a non-empty list of {' and '.join(ACTIONS)}")
    purpose = raw["purpose"]
    if not isinstance(purpose, str) or not _PURPOSE.match(purpose):
        raise _fail(f"{where}: purpose must be an identifier such as trip-diary")
    out: dict[str, Any] = {
        "type": CONSENT_TYPE,
        "stream_types": sorted(set(streams)),
        "actions": [a for a in ACTIONS if a in actions],
        "purpose": purpose,
    }
    if "validity" in raw:
        validity = raw["validity"]
        if not isinstance(validity, dict) or set(validity) != {"not_after"}:
            raise _fail(f'{where}: validity must be {{"not_after": <date and time>}}')
        not_after = _parse_time(validity["not_after"], where)
        if not_after <= now:
            raise _fail(f"{where}: validity.not_after is in the past")
        if not_after > now + MAX_VALIDITY:
            raise _fail(f"{where}: validity.not_after is more than a year away")
        out["validity"] = {"not_after": iso_z(not_after)}
    return out


def parse_authorization_details(
    raw: str | None, catalogue: Catalogue, now: datetime
) -> list[dict[str, Any]]:
    """The validated, normalised details of an ``authorization_details`` parameter (a JSON
    array); ``[]`` when the parameter is absent."""
    if raw is None or raw == "":
        return []
    if len(raw) > MAX_RAW_LENGTH:
        raise _fail("authorization_details is too long")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise _fail("authorization_details must be a JSON array") from exc
    if not isinstance(value, list) or not value:
        raise _fail("authorization_details must be a non-empty JSON array")
    if len(value) > MAX_DETAILS:
        raise _fail(f"authorization_details may hold at most {MAX_DETAILS} entries")
    return [_one(item, i, catalogue, now) for i, item in enumerate(value)]


def implied_scopes(details: Sequence[dict[str, Any]]) -> frozenset[str]:
    """The scopes the details' actions need (``read`` -> ``vault:read``, ``append`` -> ``vault:append``)."""
    return frozenset(ACTION_SCOPES[a] for d in details for a in d.get("actions", ()))


def not_after(details: Sequence[dict[str, Any]]) -> datetime | None:
    """The earliest ``validity.not_after`` among the details (tokens must not outlive it)."""
    ends = [
        _parse_time(d["validity"]["not_after"], "validity")
        for d in details
        if isinstance(d.get("validity"), dict) and "not_after" in d["validity"]
    ]
    return min(ends) if ends else None


def _within(approved: dict[str, Any], requested: dict[str, Any]) -> bool:
    if approved.get("type") != requested["type"] or approved.get("purpose") != requested["purpose"]:
        return False
    if not set(approved.get("stream_types", ())) <= set(requested["stream_types"]):
        return False
    if not set(approved.get("actions", ())) <= set(requested["actions"]):
        return False
    asked_end = requested.get("validity", {}).get("not_after")
    if asked_end is not None:
        end = approved.get("validity", {}).get("not_after")
        if end is None or _parse_time(end, "validity") > _parse_time(asked_end, "validity"):
            return False
    return True


def check_within(
    approved: Sequence[dict[str, Any]], requested: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``approved`` if every entry is covered by some requested entry (same type and purpose,
    fewer or equal streams and actions, no later end); otherwise ``ValueError``. Each approved
    entry must carry a ``consent_id`` key (``None`` until consents exist)."""
    out: list[dict[str, Any]] = []
    for entry in approved:
        if not isinstance(entry, dict) or "consent_id" not in entry:
            raise ValueError("each approved detail must carry a consent_id (None allowed)")
        core = {k: v for k, v in entry.items() if k != "consent_id"}
        if not any(_within(core, r) for r in requested):
            raise ValueError(f"the approval hook returned more than was requested: {core!r}")
        if not core.get("stream_types") or not core.get("actions"):
            continue  # narrowed to nothing: drop it
        out.append(dict(entry))
    return out
