"""Plain words for what the vault returns: who (departments, apps), which data (stream types),
and each audit entry as one sentence of a timeline. Every sentence comes from the catalogues."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clients.citizen_app.i18n import Translator, parse_time

CITIZEN_APP_NAME = "Civic Vault app"


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def stream_name(t: Translator, stream_type: str | None) -> str:
    """``your electricity use`` (the possessive phrase used inside sentences)."""
    if stream_type and t.has(f"stream.{stream_type}"):
        return t(f"stream.{stream_type}")
    return t("stream.unknown", type=stream_type or "?")


def stream_title(t: Translator, stream_type: str, catalogue_title: str | None = None) -> str:
    """``Electricity use`` (a heading)."""
    if t.has(f"stream_title.{stream_type}"):
        return t(f"stream_title.{stream_type}")
    return catalogue_title or stream_type


def department_name(t: Translator, department: str | None) -> str:
    """``the Energy Department`` (inside a sentence; capitalize at its start)."""
    if department and t.has(f"department.{department}"):
        return t(f"department.{department}")
    return t("department.unknown", id=department or "?")


def department_title(t: Translator, department: str | None) -> str:
    if department and t.has(f"department_title.{department}"):
        return t(f"department_title.{department}")
    return department or "?"


def field_name(t: Translator, stream_type: str, field: str) -> str:
    key = f"field.{stream_type}.{field}"
    return t(key) if t.has(key) else field


def period_words(t: Translator, period: object) -> str:
    """``per month`` for ``P1M`` (the budget's period), else ``per period``."""
    key = f"period.{period}"
    return t(key) if isinstance(period, str) and t.has(key) else t("period.any")


def purpose_words(t: Translator, purpose: object) -> str:
    key = f"purpose.{purpose}"
    return t(key) if isinstance(purpose, str) and t.has(key) else str(purpose or "")


def statistic_words(t: Translator, statistic: object) -> str:
    """``mean`` -> ``averages``; a label such as ``mean(kwh)`` keeps its field."""
    text = str(statistic)
    name, _, rest = text.partition("(")
    key = f"statistic.{name}"
    if not t.has(key):
        return text
    return t(key) + (f" ({rest.rstrip(')')})" if rest else "")


def dimension_words(t: Translator, dimension: object) -> str:
    key = f"dimension.{dimension}"
    return t(key) if isinstance(dimension, str) and t.has(key) else str(dimension)


def request_title(t: Translator, request_id: str | None) -> str:
    key = f"request_title.{request_id}"
    return t(key) if request_id and t.has(key) else (request_id or "?")


@dataclass(frozen=True)
class Names:
    """What the timeline needs to name things: stream id -> type, client id -> name, consent id ->
    department."""

    streams: dict[str, str]
    clients: dict[str, str]
    consents: dict[str, str | None]

    def client(self, t: Translator, client_id: str | None) -> str:
        if not client_id:
            return t("app.unknown")
        if client_id == "civic-citizen-app":
            return t("app.this_app")
        return self.clients.get(client_id, client_id)


@dataclass(frozen=True)
class TimelineEntry:
    seq: int
    at: datetime | None
    text: str
    kind: str  # data, consent, account, app, release, other
    release_id: str | None = None
    extra: str | None = None
    times: int = 1


def _actor(t: Translator, names: Names, actor: str) -> tuple[bool, str]:
    """(is it you, who it is in words)."""
    if actor == "citizen":
        return True, t("actor.you")
    kind, _, ident = actor.partition(":")
    if kind == "app":
        return False, t("actor.app", name=names.client(t, ident))
    if kind == "system" and ident == "demo-city":
        return False, t("actor.demo")
    if kind in ("department", "analyst"):
        return False, t("actor.department")
    if kind in ("vault", "system"):
        return False, t("actor.vault")
    if kind == "aggregation":
        return False, t("actor.statistics")
    return False, t("actor.other", who=actor)


def _say(t: Translator, key: str, you: bool, actor: str, **params: Any) -> str:
    """``key.you`` when the citizen did it, else ``key.other`` with ``{actor}``."""
    if you and t.has(f"{key}.you"):
        return t(f"{key}.you", **params)
    if t.has(f"{key}.other"):
        return capitalize(t(f"{key}.other", actor=actor, **params))
    return t(key, actor=actor, **params)


def describe(t: Translator, names: Names, entry: dict[str, Any]) -> TimelineEntry:
    action = str(entry.get("action", ""))
    details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
    assert isinstance(details, dict)
    you, actor = _actor(t, names, str(entry.get("actor", "")))
    seq = int(entry.get("seq", 0))
    at = parse_time(entry.get("at"))
    stream = stream_name(
        t, names.streams.get(str(details.get("stream", ""))) or details.get("type")
    )

    def out(text: str, kind: str, **extra: Any) -> TimelineEntry:
        return TimelineEntry(seq, at, text, kind, **extra)

    count = details.get("count")
    readings = t.n("count.readings", int(count)) if isinstance(count, int) else ""
    match action:
        case "account.created":
            return out(t("activity.account_created"), "account")
        case "session.started":
            return out(t("activity.session_started"), "account")
        case "passphrase.changed":
            return out(t("activity.passphrase_changed"), "account")
        case "account.recovered":
            return out(t("activity.account_recovered"), "account")
        case "stream.created":
            return out(_say(t, "activity.stream_created", you, actor, stream=stream), "data")
        case "records.appended":
            text = _say(
                t, "activity.records_appended", you, actor, stream=stream, readings=readings
            )
            return out(text, "data")
        case "records.read":
            text = _say(t, "activity.records_read", you, actor, stream=stream, readings=readings)
            return out(text, "data")
        case "chunks.compacted":
            return out(t("activity.compacted", stream=stream), "other")
        case "export.created":
            return out(t("activity.export_created"), "data")
        case "bundle.imported":
            records = details.get("records")
            n = int(records) if isinstance(records, int) else 0
            return out(t("activity.bundle_imported", readings=t.n("count.readings", n)), "data")
        case "demo.seeded":
            return out(t("activity.demo_seeded"), "data")
        case "consent.given":
            return _consent_given(t, names, details, you, actor, out)
        case "consent.withdrawn" | "consent.expired" | "consent.revoked":
            who = _consent_party(t, names, details)
            key = {
                "consent.withdrawn": "activity.consent_withdrawn",
                "consent.expired": "activity.consent_expired",
                "consent.revoked": "activity.consent_revoked",
            }[action]
            return out(_say(t, key, you, actor, who=who), "consent")
        case "request.declined":
            title = request_title(t, str(details.get("request", "")))
            return out(t("activity.request_declined", request=title), "consent")
        case "app.authorized":
            client = str(details.get("client", ""))
            if client == "civic-citizen-app":
                return out(t("activity.signed_in_app"), "account")
            return out(t("activity.app_authorized", app=names.client(t, client)), "app")
        case "app.denied":
            app = names.client(t, str(details.get("client", "")))
            return out(t("activity.app_denied", app=app), "app")
        case "app.disconnected":
            app = names.client(t, str(details.get("client", "")))
            return out(t("activity.app_disconnected", app=app), "app")
        case "data.used_in_release":
            return _used_in_release(t, details, out)
        case "data.counted_in_size_check":
            department = details.get("department")
            who = capitalize(
                department_name(t, department if isinstance(department, str) else None)
            )
            if details.get("status") == "released":  # published, without this citizen's data
                if details.get("left_out") == "consent_changed":
                    return out(t("activity.counted_consent_changed", who=who), "consent")
                return out(t("activity.counted_left_out", who=who), "consent")
            return out(t("activity.counted_in_size_check", who=who), "consent")
    return out(t("activity.other", actor=actor, action=action), "other")


def _consent_party(t: Translator, names: Names, details: dict[str, Any]) -> str:
    department = details.get("department")
    if isinstance(department, str) and department:
        return department_name(t, department)
    client = details.get("client")
    if isinstance(client, str) and client:
        return t("actor.app", name=names.client(t, client))
    consent = details.get("consent")
    if isinstance(consent, str) and names.consents.get(consent):
        return department_name(t, names.consents[consent])
    return t("department.unknown", id="?")


def _consent_given(
    t: Translator, names: Names, details: dict[str, Any], you: bool, actor: str, out: Any
) -> TimelineEntry:
    who = _consent_party(t, names, details)
    until = t.date(details.get("not_after")) if details.get("not_after") else ""
    text = _say(t, "activity.consent_given", you, actor, who=who, until=until)
    entry: TimelineEntry = out(text, "consent")
    return entry


def _used_in_release(t: Translator, details: dict[str, Any], out: Any) -> TimelineEntry:
    department = details.get("department")
    who = capitalize(department_name(t, department if isinstance(department, str) else None))
    dataset = details.get("dataset")
    data = stream_name(t, dataset if isinstance(dataset, str) else None)
    text = t("activity.used_in_release", who=who, data=data)
    extra = None
    epsilon, left = details.get("epsilon"), details.get("epsilon_left")
    if isinstance(epsilon, int | float) and isinstance(left, int | float):
        extra = t(
            "activity.used_in_release_budget",
            spent=t.number(float(epsilon)),
            left=t.number(float(left)),
            until=t.date(details.get("period_end")),
        )
    release = details.get("release_id")
    entry: TimelineEntry = out(
        text, "release", release_id=str(release) if release else None, extra=extra
    )
    return entry


def merge_repeats(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    """Consecutive identical sentences on the same day become one entry with ``times``."""
    merged: list[TimelineEntry] = []
    for entry in entries:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.text == entry.text
            and last.kind == entry.kind
            and last.release_id is None
            and entry.release_id is None
            and last.at is not None
            and entry.at is not None
            and last.at.date() == entry.at.date()
        ):
            merged[-1] = TimelineEntry(
                last.seq, last.at, last.text, last.kind, None, last.extra, last.times + 1
            )
            continue
        merged.append(entry)
    return merged
