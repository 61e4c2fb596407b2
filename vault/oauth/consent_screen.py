"""Plain words for the consent page and the citizen's list of connected apps.

Property: everything a citizen is asked to approve is shown in words (who, what, which data, why,
until when) before they approve, and the words are derived from exactly the values that will be
stored on the token, so the page cannot say less than the token allows.

TODO(consent integration): switch :func:`describe_details` to the consent package's summary
(``consent.summary.plain_summary``) once details carry consent terms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from vault.catalogue import Catalogue
from vault.errors import NotFound
from vault.oauth import policy
from vault.oauth.rar import CONSENT_TYPE

_ACTION_WORDS = {"read": "read", "append": "add new records to"}


def describe_scopes(scopes: Iterable[str]) -> list[str]:
    return [policy.SCOPE_WORDS.get(s, s) for s in sorted(set(scopes))]


def _stream_title(catalogue: Catalogue, name: str) -> str:
    try:
        return f"{catalogue.get(name).title} ({name})"
    except NotFound:  # cannot happen after validation; show the name anyway
        return name


def _date(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return f"{moment.day} {moment.strftime('%B %Y')} (UTC)"


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def describe_detail(detail: dict[str, Any], catalogue: Catalogue) -> str:
    """One sentence, e.g. "Add new records to your Trips (mobility.trip), for the purpose
    'trip-diary', until 1 March 2027 (UTC)."""
    if detail.get("type") != CONSENT_TYPE:
        return "An access this server does not know (it will be refused)."
    actions = [_ACTION_WORDS.get(a, a) for a in detail.get("actions", ())]
    streams = [_stream_title(catalogue, s) for s in detail.get("stream_types", ())]
    sentence = f"{_join(actions).capitalize()} your {_join(streams)}"
    sentence += f", for the purpose '{detail.get('purpose', '?')}'"
    end = detail.get("validity", {}).get("not_after") if detail.get("validity") else None
    sentence += f", until {_date(end)}" if end else ", until you disconnect the app"
    return sentence + "."


def describe_details(details: Sequence[dict[str, Any]], catalogue: Catalogue) -> list[str]:
    return [describe_detail(d, catalogue) for d in details]
