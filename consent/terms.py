"""Consent terms: the typed, versioned, immutable model a citizen signs.

What a :class:`ConsentTerms` says, field by field (JSON names):

* ``schema`` (the versioned IRI of this model), ``id`` (opaque, names the consent across versions),
  ``version`` (1, 2, ...), ``supersedes`` (the version this one replaces: id, version and the
  SHA-256 digest of its signed body, so versions form a hash chain), ``based_on`` (the department
  data request it answers, if any);
* ``subject``: the citizen's pseudonymous id (never a name, e-mail or other personal data);
* ``controller``: who is accountable (the city), with the contact details consent records need;
* ``jurisdiction`` (ISO 3166 code, e.g. ``ES``) and ``applicable_law`` (e.g. ``eu-gdpr:GDPR``);
* ``purposes``: our purpose ids, each with its DPV parent and its legal basis (per purpose, see
  :mod:`consent.purposes`);
* ``data_categories``: stream types, each with the explicit list of fields covered;
* ``recipients``: city departments and, optionally, named OAuth clients;
* ``processing``: ``dp_aggregate`` (only inside differentially private statistics) or ``raw`` for
  one named app (which may also be allowed to ``append``);
* ``statistics`` (count, sum, mean, quantile, histogram), ``dp_limits`` (epsilon per period, the
  period as an ISO 8601 duration, minimum group size, maximum releases per period) and
  ``group_by`` (the public dimensions results may be split by);
* ``validity``: ``not_before`` <= t < ``not_after`` (aware UTC times);
* ``notice``: URL, version, SHA-256 and language of the notice the citizen was shown;
* ``withdrawal``: where and how to withdraw (GDPR Art. 7(3): as easy as giving).

Properties:

* **Immutable.** Models are frozen; a change makes a new version (:func:`narrowed_successor`, or
  :meth:`DataRequest.terms_for` with ``supersedes=``) naming the version it supersedes.
* **Canonical.** Set-like lists are stored sorted (so equal terms are equal values), durations in
  normalised form, times in UTC; :meth:`ConsentTerms.signable_dict` is what is signed, encoded by
  the project's one :func:`consent.canonical.canonical_json`.
* **Never self-contradictory.** Building terms that contradict themselves raises
  :class:`~consent.errors.TermsInvalid` listing every problem with its field; checks against the
  data catalogue and the purpose vocabulary are in :func:`validate_terms`.
* **Status lives outside the signed body.** Given/renewed/withdrawn/expired are
  :class:`ConsentEvent` records (signed by the citizen too, except ``expired``, which the clock
  decides); :func:`consent_status` derives the status from them.

Pure: no I/O, no clock (every function that needs the time takes it as an argument).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from consent.canonical import canonical_json
from consent.data_catalogue import STATISTICS, DataCatalogue, Statistic
from consent.durations import Duration, parse_duration
from consent.errors import NarrowingRefused, Problem, TermsInvalid, problem
from consent.iris import EVENT_SCHEMA, ID_PATTERN, TERMS_SCHEMA
from consent.purposes import LEGAL_BASES, PurposeVocabulary, city_purposes

RecipientKind = Literal["department", "client"]
ProcessingMode = Literal["dp_aggregate", "raw"]
EventKind = Literal["given", "renewed", "withdrawn", "expired"]
ConsentStatus = Literal["requested", "given", "renewed", "withdrawn", "expired", "superseded"]

VALID_STATUSES: frozenset[str] = frozenset({"given", "renewed"})
# The statuses under which terms may allow anything (DPV: ConsentStatusValidForProcessing).

_MAX_TEXT = 512
_MAX_LONG_TEXT = 2000
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_JURISDICTION = re.compile(r"[A-Z]{2}(?:-[A-Z0-9]{1,3})?")
_COUNTRY = re.compile(r"[A-Z]{2}")
_LANGUAGE = re.compile(r"[a-z]{2}(?:-[A-Z]{2})?")
_CURIE_OR_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DIMENSION = re.compile(r"[a-z][a-z0-9_]{0,63}")


# --------------------------------------------------------------------------------------------------
# Times
# --------------------------------------------------------------------------------------------------


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; ``ValueError`` for a naive time (a time without a zone is ambiguous)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must be an aware time (with a time zone, for example Z for UTC)")
    return value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """``2026-06-01T00:00:00Z`` (microseconds only when not zero): the one text form of a time."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _AwareUtc:
    """Pydantic metadata for :data:`UtcDateTime`: an aware time, stored in UTC, ``...Z`` in JSON.

    (A class rather than ``AfterValidator(...)`` calls, so that defining the type does no work at
    import time; see ``tests/test_import_rules.py``.)
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            as_utc,
            handler(source),
            serialization=core_schema.plain_serializer_function_ser_schema(
                iso_utc, when_used="json"
            ),
        )


UtcDateTime = Annotated[datetime, _AwareUtc]


class FrozenModel(BaseModel):
    """Base of the consent models: immutable, no unknown keys, JSON names via aliases."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class SignedBody(FrozenModel):
    """A model whose canonical JSON is signed (terms, events): :meth:`signable_dict` says what is
    signed, and :attr:`signable_bytes` is its canonical JSON, computed once per (immutable) object:
    verifying, digesting and deciding on thousands of consents would otherwise redo it."""

    def signable_dict(self) -> dict[str, Any]:
        """What is signed: every field, JSON-ready (subclasses say more)."""
        return self.model_dump(mode="json", by_alias=True)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; the cached :attr:`signable_bytes` is dropped (it belongs to these values)."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("signable_bytes", None)
        return copy

    @cached_property
    def signable_bytes(self) -> bytes:
        """``canonical_json(self.signable_dict())``, computed once per object (or, for a model
        read by :meth:`from_signed_json`, the bytes it was read from)."""
        return canonical_json(self.signable_dict())

    @classmethod
    def from_signed_json(cls, text: str | bytes) -> Self:
        """The model read from ``text``, bytes a signature covers, with ``text`` as its
        :attr:`signable_bytes`: a stored consent is checked without encoding it again.

        Property: a signature checked over :attr:`signable_bytes` is checked over exactly the
        bytes the model was read from, so what verifies is what is decided on, whatever the
        encoding of ``text`` (bytes changed in any way fail the signature). Every text our
        signers and stores produce is ``canonical_json`` of a model, and reading it back gives
        a model whose own encoding is that text again (tested with Hypothesis), so digests and
        signatures are the same as for the model encoded afresh. Raises pydantic's
        ``ValidationError`` (a ``ValueError``) or the model's own validation error."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        model = cls.model_validate_json(data)
        model.__dict__["signable_bytes"] = data
        return model


# --------------------------------------------------------------------------------------------------
# Parts of the terms
# --------------------------------------------------------------------------------------------------


class Controller(FrozenModel):
    """The accountable organisation (the city), with the contact details records must carry."""

    id: str
    name: str
    contact: str  # a role or team, e.g. "Data Protection Officer" (not a private person's name)
    street_address: str
    locality: str
    postal_code: str
    country: str  # ISO 3166-1 alpha-2
    email: str
    phone: str
    url: str


class PurposeGrant(FrozenModel):
    """One purpose: our id, its DPV parent, and the legal basis for it."""

    id: str
    dpv_parent: str
    legal_basis: str = "eu-gdpr:A6-1-a"


class DataCategory(FrozenModel):
    """A stream type and the explicit list of its fields the terms cover.

    Fields are always listed: if the catalogue later gains a field, existing consent does not
    silently cover it.
    """

    stream_type: str
    fields: tuple[str, ...]

    @field_validator("fields")
    @classmethod
    def _sorted(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(value))


class Recipient(FrozenModel):
    """A city department, or a named OAuth client (a third-party app)."""

    kind: RecipientKind
    id: str

    def label(self) -> str:
        return f"{self.kind} {self.id!r}"


class Processing(FrozenModel):
    """How the data may be processed.

    ``dp_aggregate``: only inside differentially private statistics released by the vault's
    aggregation service; no recipient ever sees a single record. ``raw``: the one app named in
    ``app`` (an OAuth client id) may read the records themselves and, with ``append``, add records.
    """

    mode: ProcessingMode = "dp_aggregate"
    app: str | None = None
    append: bool = False


class DPLimits(FrozenModel):
    """Differential-privacy limits of ``dp_aggregate`` processing.

    ``epsilon_per_period``: the most privacy loss (pure epsilon, privacy unit: the citizen) all
    releases touching this citizen's data may spend in one ``period`` (ISO 8601 duration, e.g.
    ``P1M``). The decision only checks that one release asks for no more than this; the budget
    ledger elsewhere adds releases up. ``min_group_size``: no released group may hold fewer
    citizens. ``max_releases_per_period``: releases per period.
    """

    epsilon_per_period: float
    period: str
    min_group_size: int
    max_releases_per_period: int

    @field_validator("period")
    @classmethod
    def _normalised(cls, value: str) -> str:
        try:
            return parse_duration(value).iso()
        except ValueError:
            return value  # reported, with its field, by the terms' own check

    @property
    def period_duration(self) -> Duration:
        return parse_duration(self.period)


class Validity(FrozenModel):
    """``not_before`` <= t < ``not_after``, aware UTC times."""

    not_before: UtcDateTime
    not_after: UtcDateTime


class Notice(FrozenModel):
    """The notice the citizen was shown: where, which version, its SHA-256 (hex) and language."""

    url: str
    version: str
    sha256: str
    language: str = "en"


class Withdrawal(FrozenModel):
    """How to withdraw: a URL (the "My consents" page) and plain instructions."""

    url: str
    instructions: str


class TermsRef(FrozenModel):
    """Names one signed version of a consent: id, version, and the digest of its signed body."""

    id: str
    version: int
    digest: str


class RequestRef(FrozenModel):
    """Names the department data request the terms answer."""

    id: str
    version: int


# --------------------------------------------------------------------------------------------------
# The terms
# --------------------------------------------------------------------------------------------------


class ConsentTerms(SignedBody):
    """One version of a citizen's consent terms (see the module docstring for the fields)."""

    schema_iri: str = Field(default=TERMS_SCHEMA, alias="schema")
    id: str
    version: int = 1
    supersedes: TermsRef | None = None
    based_on: RequestRef | None = None
    subject: str
    controller: Controller
    jurisdiction: str
    applicable_law: str
    purposes: tuple[PurposeGrant, ...]
    data_categories: tuple[DataCategory, ...]
    recipients: tuple[Recipient, ...]
    processing: Processing = Processing()
    statistics: tuple[Statistic, ...] = ()
    dp_limits: DPLimits | None = None
    group_by: tuple[str, ...] = ()
    validity: Validity
    notice: Notice
    withdrawal: Withdrawal

    @field_validator("purposes")
    @classmethod
    def _sort_purposes(cls, value: tuple[PurposeGrant, ...]) -> tuple[PurposeGrant, ...]:
        return tuple(sorted(value, key=lambda p: p.id))

    @field_validator("data_categories")
    @classmethod
    def _sort_categories(cls, value: tuple[DataCategory, ...]) -> tuple[DataCategory, ...]:
        return tuple(sorted(value, key=lambda c: c.stream_type))

    @field_validator("recipients")
    @classmethod
    def _sort_recipients(cls, value: tuple[Recipient, ...]) -> tuple[Recipient, ...]:
        return tuple(sorted(value, key=lambda r: (r.kind, r.id)))

    @field_validator("statistics")
    @classmethod
    def _sort_statistics(cls, value: tuple[Statistic, ...]) -> tuple[Statistic, ...]:
        rank = {name: i for i, name in enumerate(STATISTICS)}
        return tuple(sorted(value, key=lambda s: rank[s]))

    @field_validator("group_by")
    @classmethod
    def _sort_group_by(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _consistent(self) -> ConsentTerms:
        problems = terms_problems(self)
        if problems:
            raise TermsInvalid(problems)
        return self

    # -- views -------------------------------------------------------------------------------------

    def signable_dict(self) -> dict[str, Any]:
        """The signed body: every field, JSON-ready (times as ``...Z`` text, tuples as lists).

        Status and events are not part of it (they are separate signed :class:`ConsentEvent` s).
        Sign and verify ``canonical_json(terms.signable_dict())``.
        """
        return self.model_dump(mode="json", by_alias=True)

    def category(self, stream_type: str) -> DataCategory | None:
        """The data category for ``stream_type``, or ``None``."""
        return next((c for c in self.data_categories if c.stream_type == stream_type), None)

    @property
    def purpose_ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.purposes)

    @property
    def ref(self) -> TermsRef:
        """A reference to this version (id, version, digest), e.g. for ``supersedes``."""
        return TermsRef(id=self.id, version=self.version, digest=terms_digest(self))


def terms_digest(terms: ConsentTerms) -> str:
    """``sha256:<hex>`` of the canonical JSON of the signed body."""
    return "sha256:" + hashlib.sha256(terms.signable_bytes).hexdigest()


def parse_terms(data: Mapping[str, Any]) -> ConsentTerms:
    """Build terms from a JSON-like dict; every problem, structural or semantic, as
    :class:`~consent.errors.TermsInvalid` (never a pydantic error)."""
    try:
        return ConsentTerms.model_validate(data)
    except ValidationError as exc:
        raise TermsInvalid(problems_from_validation(exc)) from None


def problems_from_validation(exc: ValidationError, prefix: str = "") -> list[Problem]:
    """A pydantic :class:`ValidationError` as problems (dotted paths, plain messages)."""
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(part) for part in err["loc"]) or "$"
        out.append(problem(prefix + path, err["msg"]))
    return out


# --------------------------------------------------------------------------------------------------
# Self-consistency (no catalogue needed)
# --------------------------------------------------------------------------------------------------


def _check_id(value: str, path: str, out: list[Problem]) -> None:
    if not ID_PATTERN.fullmatch(value):
        out.append(
            problem(
                path,
                f"{value!r} is not a valid id: use 1 to 128 letters, digits, '.', '_', '~' or '-', "
                "starting with a letter or digit",
            )
        )


def _check_text(value: str, path: str, out: list[Problem], limit: int = _MAX_TEXT) -> None:
    if not value.strip():
        out.append(problem(path, "must not be empty"))
    elif len(value) > limit:
        out.append(problem(path, f"is longer than {limit} characters"))


def _check_https(value: str, path: str, out: list[Problem]) -> None:
    if not value.startswith("https://") or len(value) <= len("https://") or " " in value:
        out.append(problem(path, f"{value!r} must be an https:// address"))
    elif len(value) > _MAX_LONG_TEXT:
        out.append(problem(path, f"is longer than {_MAX_LONG_TEXT} characters"))


def _check_unique(values: Sequence[Any], path: str, what: str, out: list[Problem]) -> None:
    seen: set[Any] = set()
    for i, value in enumerate(values):
        if value in seen:
            out.append(problem(f"{path}.{i}", f"{what} {value!r} is listed twice"))
        seen.add(value)


def _check_controller(c: Controller, path: str, out: list[Problem]) -> None:
    _check_id(c.id, f"{path}.id", out)
    for name in ("name", "contact", "street_address", "locality", "postal_code", "phone"):
        _check_text(getattr(c, name), f"{path}.{name}", out)
    if not _COUNTRY.fullmatch(c.country):
        out.append(problem(f"{path}.country", f"{c.country!r} is not an ISO 3166 country code"))
    if not _EMAIL.fullmatch(c.email):
        out.append(problem(f"{path}.email", f"{c.email!r} is not an e-mail address"))
    _check_https(c.url, f"{path}.url", out)


def _check_purposes(purposes: Sequence[PurposeGrant], path: str, out: list[Problem]) -> None:
    if not purposes:
        out.append(problem(path, "name at least one purpose"))
    for i, p in enumerate(purposes):
        _check_id(p.id, f"{path}.{i}.id", out)
        if not p.dpv_parent.startswith("dpv:") or len(p.dpv_parent) <= len("dpv:"):
            out.append(
                problem(
                    f"{path}.{i}.dpv_parent", f"{p.dpv_parent!r} is not a DPV purpose (dpv:...)"
                )
            )
        if p.legal_basis not in LEGAL_BASES:
            out.append(
                problem(
                    f"{path}.{i}.legal_basis",
                    f"unknown legal basis {p.legal_basis!r} (known: {', '.join(LEGAL_BASES)})",
                )
            )
    _check_unique([p.id for p in purposes], path, "purpose", out)


def _check_categories(categories: Sequence[DataCategory], path: str, out: list[Problem]) -> None:
    if not categories:
        out.append(problem(path, "name at least one stream type"))
    for i, c in enumerate(categories):
        if not c.stream_type.strip():
            out.append(problem(f"{path}.{i}.stream_type", "must not be empty"))
        if not c.fields:
            out.append(problem(f"{path}.{i}.fields", "name at least one field"))
        _check_unique(c.fields, f"{path}.{i}.fields", "field", out)
    _check_unique([c.stream_type for c in categories], path, "stream type", out)


def _check_dp_limits(limits: DPLimits, path: str, out: list[Problem]) -> None:
    eps = limits.epsilon_per_period
    if not math.isfinite(eps) or eps <= 0:
        out.append(problem(f"{path}.epsilon_per_period", f"must be a number above 0, not {eps!r}"))
    try:
        parse_duration(limits.period)
    except ValueError as exc:
        out.append(problem(f"{path}.period", str(exc)))
    if limits.min_group_size < 1:
        out.append(problem(f"{path}.min_group_size", "must be at least 1"))
    if limits.max_releases_per_period < 1:
        out.append(problem(f"{path}.max_releases_per_period", "must be at least 1"))


def _check_analysis(
    processing: Processing,
    statistics: Sequence[str],
    dp_limits: DPLimits | None,
    group_by: Sequence[str],
    out: list[Problem],
) -> None:
    """Processing, statistics, DP limits and grouping agree with each other."""
    if processing.mode == "dp_aggregate":
        if processing.app is not None:
            out.append(problem("processing.app", "only raw processing names an app"))
        if processing.append:
            out.append(problem("processing.append", "only an app with raw access may add records"))
        if not statistics:
            out.append(problem("statistics", "statistics-only processing must allow a statistic"))
        if dp_limits is None:
            out.append(problem("dp_limits", "statistics-only processing needs privacy limits"))
    else:
        if processing.app is None:
            out.append(problem("processing.app", "raw processing must name the app (client id)"))
        else:
            _check_id(processing.app, "processing.app", out)
        if statistics:
            out.append(problem("statistics", "raw access releases no statistics; leave it empty"))
        if dp_limits is not None:
            out.append(problem("dp_limits", "raw access has no privacy limits; leave it empty"))
        if group_by:
            out.append(problem("group_by", "raw access releases no groups; leave it empty"))
    if dp_limits is not None:
        _check_dp_limits(dp_limits, "dp_limits", out)
    _check_unique(statistics, "statistics", "statistic", out)
    _check_unique(group_by, "group_by", "dimension", out)
    for i, dim in enumerate(group_by):
        if not _DIMENSION.fullmatch(dim):
            out.append(problem(f"group_by.{i}", f"{dim!r} is not a dimension name"))


def _check_common(
    jurisdiction: str,
    applicable_law: str,
    controller: Controller,
    notice: Notice,
    withdrawal: Withdrawal,
    out: list[Problem],
) -> None:
    if not _JURISDICTION.fullmatch(jurisdiction):
        out.append(
            problem("jurisdiction", f"{jurisdiction!r} is not an ISO 3166 code such as ES or ES-MD")
        )
    if not _CURIE_OR_IRI.fullmatch(applicable_law):
        out.append(
            problem("applicable_law", f"{applicable_law!r} is not an IRI such as eu-gdpr:GDPR")
        )
    _check_controller(controller, "controller", out)
    _check_https(notice.url, "notice.url", out)
    _check_text(notice.version, "notice.version", out)
    if not _SHA256_HEX.fullmatch(notice.sha256):
        out.append(problem("notice.sha256", "must be 64 lower-case hex digits (SHA-256)"))
    if not _LANGUAGE.fullmatch(notice.language):
        out.append(problem("notice.language", f"{notice.language!r} is not a language code"))
    _check_https(withdrawal.url, "withdrawal.url", out)
    _check_text(withdrawal.instructions, "withdrawal.instructions", out, _MAX_LONG_TEXT)


def terms_problems(terms: ConsentTerms) -> list[Problem]:
    """Every way ``terms`` contradict themselves (empty when they do not); no catalogue needed."""
    out: list[Problem] = []
    if terms.schema_iri != TERMS_SCHEMA:
        out.append(
            problem("schema", f"unknown schema {terms.schema_iri!r} (this is {TERMS_SCHEMA})")
        )
    _check_id(terms.id, "id", out)
    if terms.version < 1:
        out.append(problem("version", "must be 1 or more"))
    elif terms.version == 1 and terms.supersedes is not None:
        out.append(problem("supersedes", "version 1 supersedes nothing"))
    elif terms.version > 1:
        ref = terms.supersedes
        if ref is None:
            out.append(
                problem(
                    "supersedes", f"version {terms.version} must name the version it supersedes"
                )
            )
        else:
            if ref.id != terms.id:
                out.append(problem("supersedes.id", "must be the id of these terms"))
            if ref.version != terms.version - 1:
                out.append(problem("supersedes.version", f"must be {terms.version - 1}"))
            if not _DIGEST.fullmatch(ref.digest):
                out.append(problem("supersedes.digest", "must be sha256: and 64 hex digits"))
    if terms.based_on is not None:
        _check_id(terms.based_on.id, "based_on.id", out)
        if terms.based_on.version < 1:
            out.append(problem("based_on.version", "must be 1 or more"))
    _check_id(terms.subject, "subject", out)
    _check_common(
        terms.jurisdiction,
        terms.applicable_law,
        terms.controller,
        terms.notice,
        terms.withdrawal,
        out,
    )
    _check_purposes(terms.purposes, "purposes", out)
    _check_categories(terms.data_categories, "data_categories", out)
    if not terms.recipients:
        out.append(problem("recipients", "name at least one recipient"))
    for i, r in enumerate(terms.recipients):
        _check_id(r.id, f"recipients.{i}.id", out)
    _check_unique([(r.kind, r.id) for r in terms.recipients], "recipients", "recipient", out)
    if terms.processing.mode == "raw" and terms.processing.app is not None:
        app = Recipient(kind="client", id=terms.processing.app)
        if terms.recipients != (app,):
            out.append(
                problem(
                    "recipients",
                    "with raw access the only recipient is the app processing.app names "
                    f"(client {terms.processing.app!r})",
                )
            )
    _check_analysis(terms.processing, terms.statistics, terms.dp_limits, terms.group_by, out)
    v = terms.validity
    if v.not_after <= v.not_before:
        out.append(
            problem(
                "validity.not_after",
                f"{iso_utc(v.not_after)} is not after not_before {iso_utc(v.not_before)}",
            )
        )
    return out


# --------------------------------------------------------------------------------------------------
# Checks against the catalogue and the purpose vocabulary
# --------------------------------------------------------------------------------------------------


def _catalogue_problems(
    categories: Sequence[DataCategory],
    statistics: Sequence[str],
    group_by: Sequence[str],
    purposes: Sequence[tuple[str, str | None]],
    catalogue: DataCatalogue,
    vocabulary: PurposeVocabulary,
    paths: Mapping[str, str],
) -> list[Problem]:
    out: list[Problem] = []
    for i, cat in enumerate(categories):
        stream = catalogue.stream(cat.stream_type)
        if stream is None:
            known = ", ".join(s.name for s in catalogue.streams)
            out.append(
                problem(
                    f"{paths['categories']}.{i}.stream_type",
                    f"unknown stream type {cat.stream_type!r} (known: {known})",
                )
            )
            continue
        for j, name in enumerate(cat.fields):
            if stream.field(name) is None:
                out.append(
                    problem(
                        f"{paths['categories']}.{i}.fields.{j}",
                        f"{cat.stream_type} has no field {name!r} "
                        f"(its fields: {', '.join(stream.field_names)})",
                    )
                )
        chosen = [f for f in (stream.field(n) for n in cat.fields) if f is not None]
        for k, stat in enumerate(statistics):
            if chosen and not any(stat in f.statistics for f in chosen):
                out.append(
                    problem(
                        f"{paths['statistics']}.{k}",
                        f"{cat.stream_type} cannot support {stat!r} on the fields "
                        f"{', '.join(f.name for f in chosen)}",
                    )
                )
    for k, dim in enumerate(group_by):
        if catalogue.dimension(dim) is None:
            known = ", ".join(sorted(d.name for d in catalogue.dimensions)) or "none"
            out.append(
                problem(
                    f"{paths['group_by']}.{k}",
                    f"{dim!r} is not a public grouping dimension (public ones: {known})",
                )
            )
    for i, (purpose_id, parent) in enumerate(purposes):
        definition = vocabulary.get(purpose_id)
        path = paths["purposes"].format(i=i)
        if definition is None:
            out.append(
                problem(
                    path,
                    f"unknown purpose {purpose_id!r} (known: {', '.join(vocabulary.ids)})",
                )
            )
        elif parent is not None and parent != definition.dpv_parent:
            out.append(
                problem(
                    path.rsplit(".", 1)[0] + ".dpv_parent",
                    f"the city's vocabulary links {purpose_id!r} to {definition.dpv_parent}, "
                    f"not {parent}",
                )
            )
    return out


def validate_terms(
    terms: ConsentTerms, catalogue: DataCatalogue, vocabulary: PurposeVocabulary | None = None
) -> None:
    """Check ``terms`` against what exists; raise :class:`~consent.errors.TermsInvalid` listing
    every unknown stream type or field, every statistic a stream cannot support on the chosen
    fields, every dimension that is not public, and every unknown purpose (or wrong DPV parent).

    Self-contradictions are already refused when the terms are built (:func:`terms_problems`).
    """
    problems = _catalogue_problems(
        terms.data_categories,
        terms.statistics,
        terms.group_by,
        [(p.id, p.dpv_parent) for p in terms.purposes],
        catalogue,
        vocabulary or city_purposes(),
        {
            "categories": "data_categories",
            "statistics": "statistics",
            "group_by": "group_by",
            "purposes": "purposes.{i}.id",
        },
    )
    if problems:
        raise TermsInvalid(problems)


# --------------------------------------------------------------------------------------------------
# Events and status
# --------------------------------------------------------------------------------------------------


class ConsentEvent(SignedBody):
    """Something that happened to one version of a consent.

    ``given`` and ``renewed`` (re-affirmed) and ``withdrawn`` are acts of the citizen and are signed
    by the citizen's key (:func:`consent.signing.sign_event`); ``expired`` is derived from the clock
    and may be recorded unsigned. ``terms_digest`` binds the event to the exact signed body.
    """

    schema_iri: str = Field(default=EVENT_SCHEMA, alias="schema")
    kind: EventKind
    at: UtcDateTime
    terms_id: str
    terms_version: int
    terms_digest: str

    def signable_dict(self) -> dict[str, Any]:
        """The signed content of the event (its own schema IRI keeps it apart from terms)."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def for_terms(cls, terms: ConsentTerms, kind: EventKind, at: datetime) -> ConsentEvent:
        """An event of ``kind`` at ``at`` about exactly ``terms``."""
        return cls(
            kind=kind,
            at=at,
            terms_id=terms.id,
            terms_version=terms.version,
            terms_digest=terms_digest(terms),
        )


def consent_status(
    terms: ConsentTerms, events: Iterable[ConsentEvent], now: datetime
) -> ConsentStatus:
    """The status of (signed) ``terms`` at ``now``, from the events of their history.

    Rules, first match wins (fail closed):

    1. a ``withdrawn`` event for this id and version, whatever its time or digest → ``withdrawn``
       (withdrawal is final for a version; giving again makes a new version);
    2. a ``given`` or ``renewed`` event for a *later* version of the same id → ``superseded``;
    3. ``now`` at or after ``not_after``, or an ``expired`` event → ``expired``;
    4. a ``renewed`` event matching this version's digest → ``renewed``;
    5. otherwise ``given`` (the citizen's signature on the terms is the act of giving; a
       ``given`` event records when).

    Events about other consents are ignored. ``now`` before ``not_before`` still gives ``given``:
    the decision refuses requests outside the validity window on its own.
    """
    now = as_utc(now)
    mine = [e for e in events if e.terms_id == terms.id]
    this = [e for e in mine if e.terms_version == terms.version]
    if any(e.kind == "withdrawn" for e in this):
        return "withdrawn"
    if any(e.terms_version > terms.version and e.kind in ("given", "renewed") for e in mine):
        return "superseded"
    if now >= terms.validity.not_after or any(e.kind == "expired" for e in this):
        return "expired"
    renewals = [e for e in this if e.kind == "renewed"]
    if renewals and any(e.terms_digest == terms_digest(terms) for e in renewals):
        return "renewed"
    return "given"


# --------------------------------------------------------------------------------------------------
# Narrowing
# --------------------------------------------------------------------------------------------------


class Narrowing(FrozenModel):
    """A citizen's "accept with tighter limits". Every field is optional; ``None`` keeps the
    terms' value. Each given value must be at least as tight as the terms':

    * ``epsilon_per_period`` no larger, ``max_releases_per_period`` no larger,
      ``min_group_size`` no smaller;
    * ``not_before`` no earlier, ``not_after`` no later;
    * ``data_categories`` a subset of the stream types, each with a subset of its fields;
    * ``statistics``, ``group_by``, ``purposes`` (ids) and ``recipients`` subsets.
    """

    epsilon_per_period: float | None = None
    min_group_size: int | None = None
    max_releases_per_period: int | None = None
    not_before: UtcDateTime | None = None
    not_after: UtcDateTime | None = None
    data_categories: tuple[DataCategory, ...] | None = None
    statistics: tuple[Statistic, ...] | None = None
    group_by: tuple[str, ...] | None = None
    purposes: tuple[str, ...] | None = None
    recipients: tuple[Recipient, ...] | None = None


def _widenings(terms: ConsentTerms, n: Narrowing) -> list[Problem]:
    out: list[Problem] = []
    limits = terms.dp_limits
    for name in ("epsilon_per_period", "min_group_size", "max_releases_per_period"):
        wanted = getattr(n, name)
        if wanted is None:
            continue
        if limits is None:
            out.append(
                problem(f"dp_limits.{name}", "these terms release no statistics: nothing to narrow")
            )
            continue
        current = getattr(limits, name)
        if name == "min_group_size":
            if wanted < current:
                out.append(
                    problem(
                        f"dp_limits.{name}", f"{wanted} is smaller than the {current} in the terms"
                    )
                )
        elif not wanted <= current:  # also refuses NaN
            out.append(
                problem(
                    f"dp_limits.{name}", f"{wanted!r} is more than the {current!r} in the terms"
                )
            )
    if n.not_before is not None and n.not_before < terms.validity.not_before:
        out.append(
            problem(
                "validity.not_before",
                f"{iso_utc(n.not_before)} is earlier than {iso_utc(terms.validity.not_before)}",
            )
        )
    if n.not_after is not None and n.not_after > terms.validity.not_after:
        out.append(
            problem(
                "validity.not_after",
                f"{iso_utc(n.not_after)} is later than {iso_utc(terms.validity.not_after)}",
            )
        )
    if n.data_categories is not None:
        for i, cat in enumerate(n.data_categories):
            mine = terms.category(cat.stream_type)
            if mine is None:
                out.append(
                    problem(
                        f"data_categories.{i}.stream_type",
                        f"{cat.stream_type!r} is not among the terms' stream types",
                    )
                )
                continue
            for j, f in enumerate(cat.fields):
                if f not in mine.fields:
                    out.append(
                        problem(
                            f"data_categories.{i}.fields.{j}",
                            f"{f!r} is not among the fields of {cat.stream_type} in the terms",
                        )
                    )
    subsets: list[tuple[str, Sequence[Any] | None, Sequence[Any], str]] = [
        ("statistics", n.statistics, terms.statistics, "statistic"),
        ("group_by", n.group_by, terms.group_by, "dimension"),
        ("purposes", n.purposes, terms.purpose_ids, "purpose"),
        ("recipients", n.recipients, terms.recipients, "recipient"),
    ]
    for field, wanted_items, allowed, what in subsets:
        for i, item in enumerate(wanted_items or ()):
            if item not in allowed:
                shown = item.label() if isinstance(item, Recipient) else repr(item)
                out.append(problem(f"{field}.{i}", f"{what} {shown} is not in the terms"))
    return out


def apply_narrowing(terms: ConsentTerms, narrowing: Narrowing) -> ConsentTerms:
    """The terms with ``narrowing`` applied (same id and version: used when accepting a request).

    Raises :class:`~consent.errors.NarrowingRefused` naming every field the narrowing would widen,
    and :class:`~consent.errors.TermsInvalid` if the result contradicts itself (for example a
    ``not_after`` before ``not_before``, or no field left).
    """
    widened = _widenings(terms, narrowing)
    if widened:
        raise NarrowingRefused(widened)
    data: dict[str, Any] = terms.model_dump(by_alias=True)
    if terms.dp_limits is not None:
        for name in ("epsilon_per_period", "min_group_size", "max_releases_per_period"):
            value = getattr(narrowing, name)
            if value is not None:
                data["dp_limits"][name] = value
    if narrowing.not_before is not None:
        data["validity"]["not_before"] = narrowing.not_before
    if narrowing.not_after is not None:
        data["validity"]["not_after"] = narrowing.not_after
    if narrowing.data_categories is not None:
        data["data_categories"] = [c.model_dump() for c in narrowing.data_categories]
    if narrowing.statistics is not None:
        data["statistics"] = list(narrowing.statistics)
    if narrowing.group_by is not None:
        data["group_by"] = list(narrowing.group_by)
    if narrowing.purposes is not None:
        data["purposes"] = [p.model_dump() for p in terms.purposes if p.id in narrowing.purposes]
    if narrowing.recipients is not None:
        data["recipients"] = [r.model_dump() for r in narrowing.recipients]
    return ConsentTerms.model_validate(data)


def narrowed_successor(terms: ConsentTerms, narrowing: Narrowing) -> ConsentTerms:
    """The next version of ``terms`` with ``narrowing`` applied, naming ``terms`` as superseded.

    This is how a citizen tightens a consent they already gave: the new version needs only the
    citizen's signature. (Anything wider needs a new request and a new acceptance.)
    """
    narrowed = apply_narrowing(terms, narrowing)
    data = narrowed.model_dump(by_alias=True)
    data["version"] = terms.version + 1
    data["supersedes"] = terms.ref.model_dump()
    return ConsentTerms.model_validate(data)


# --------------------------------------------------------------------------------------------------
# Data requests (what departments publish)
# --------------------------------------------------------------------------------------------------


class LocalText(FrozenModel):
    """The same text in English and Spanish."""

    en: str
    es: str

    def get(self, language: str) -> str:
        return self.es if language == "es" else self.en


class DataRequest(FrozenModel):
    """What a department asks citizens for.

    The streams and fields, the purpose (an id from the city's vocabulary, and the department's
    own plain words in ``purpose_text``), the processing (statistics-only unless a named app reads
    raw data), statistics, DP limits, grouping, how long the consent would last (``duration``, ISO
    8601, counted from acceptance), the notice, the controller and how to withdraw.
    :meth:`terms_for` builds the terms a citizen would sign.
    """

    id: str
    version: int = 1
    published_at: UtcDateTime | None = None
    department: str
    clients: tuple[str, ...] = ()
    title: LocalText
    purpose: str
    purpose_text: LocalText
    legal_basis: str = "eu-gdpr:A6-1-a"
    data_categories: tuple[DataCategory, ...]
    processing: Processing = Processing()
    statistics: tuple[Statistic, ...] = ()
    dp_limits: DPLimits | None = None
    group_by: tuple[str, ...] = ()
    duration: str
    notice: Notice
    controller: Controller
    jurisdiction: str
    applicable_law: str = "eu-gdpr:GDPR"
    withdrawal: Withdrawal

    @model_validator(mode="after")
    def _consistent(self) -> DataRequest:
        problems = request_problems(self)
        if problems:
            raise TermsInvalid(problems)
        return self

    def recipients(self) -> tuple[Recipient, ...]:
        """Who would receive: the department and named clients; for raw access, only the app."""
        if self.processing.mode == "raw" and self.processing.app is not None:
            return (Recipient(kind="client", id=self.processing.app),)
        return (
            Recipient(kind="department", id=self.department),
            *(Recipient(kind="client", id=c) for c in self.clients),
        )

    def terms_for(
        self,
        subject: str,
        now: datetime,
        narrowing: Narrowing | None = None,
        *,
        terms_id: str | None = None,
        supersedes: ConsentTerms | None = None,
        vocabulary: PurposeVocabulary | None = None,
    ) -> ConsentTerms:
        """The terms ``subject`` would sign when accepting at ``now`` (optionally narrowed).

        Validity runs from ``now`` (whole seconds, UTC) for ``duration``. The id is ``terms_id``,
        or the superseded terms' id (``supersedes=``, for a new version of an existing consent),
        or else derived from the request, the subject and the time (deterministic: this function
        is pure). Raises :class:`~consent.errors.NarrowingRefused` for a narrowing that widens,
        :class:`~consent.errors.TermsInvalid` for a result that is not valid.
        """
        start = as_utc(now).replace(microsecond=0)
        try:
            end = parse_duration(self.duration).add_to(start)
        except ValueError as exc:
            raise TermsInvalid([problem("duration", str(exc))]) from None
        purpose = (vocabulary or city_purposes()).get(self.purpose)
        if purpose is None:
            raise TermsInvalid([problem("purpose", f"unknown purpose {self.purpose!r}")])
        if supersedes is not None:
            identity: dict[str, Any] = {
                "id": supersedes.id,
                "version": supersedes.version + 1,
                "supersedes": supersedes.ref.model_dump(),
            }
        else:
            derived = hashlib.sha256(
                canonical_json([self.id, self.version, subject, iso_utc(start)])
            ).hexdigest()[:32]
            identity = {"id": terms_id or derived, "version": 1}
        data: dict[str, Any] = {
            **identity,
            "based_on": {"id": self.id, "version": self.version},
            "subject": subject,
            "controller": self.controller.model_dump(),
            "jurisdiction": self.jurisdiction,
            "applicable_law": self.applicable_law,
            "purposes": [
                {
                    "id": purpose.id,
                    "dpv_parent": purpose.dpv_parent,
                    "legal_basis": self.legal_basis,
                }
            ],
            "data_categories": [c.model_dump() for c in self.data_categories],
            "recipients": [r.model_dump() for r in self.recipients()],
            "processing": self.processing.model_dump(),
            "statistics": list(self.statistics),
            "dp_limits": self.dp_limits.model_dump() if self.dp_limits else None,
            "group_by": list(self.group_by),
            "validity": {"not_before": start, "not_after": end},
            "notice": self.notice.model_dump(),
            "withdrawal": self.withdrawal.model_dump(),
        }
        terms = ConsentTerms.model_validate(data)
        return apply_narrowing(terms, narrowing) if narrowing is not None else terms


def request_problems(request: DataRequest) -> list[Problem]:
    """Every way a data request contradicts itself (empty when it does not)."""
    out: list[Problem] = []
    _check_id(request.id, "id", out)
    if request.version < 1:
        out.append(problem("version", "must be 1 or more"))
    _check_id(request.department, "department", out)
    for i, client in enumerate(request.clients):
        _check_id(client, f"clients.{i}", out)
    _check_unique(request.clients, "clients", "client", out)
    for name in ("title", "purpose_text"):
        text: LocalText = getattr(request, name)
        _check_text(text.en, f"{name}.en", out)
        _check_text(text.es, f"{name}.es", out)
    _check_id(request.purpose, "purpose", out)
    if request.legal_basis not in LEGAL_BASES:
        out.append(problem("legal_basis", f"unknown legal basis {request.legal_basis!r}"))
    _check_categories(request.data_categories, "data_categories", out)
    _check_analysis(
        request.processing, request.statistics, request.dp_limits, request.group_by, out
    )
    if request.processing.mode == "raw" and request.clients:
        out.append(problem("clients", "with raw access the only recipient is the named app"))
    try:
        parse_duration(request.duration)
    except ValueError as exc:
        out.append(problem("duration", str(exc)))
    _check_common(
        request.jurisdiction,
        request.applicable_law,
        request.controller,
        request.notice,
        request.withdrawal,
        out,
    )
    return out


def validate_request(
    request: DataRequest, catalogue: DataCatalogue, vocabulary: PurposeVocabulary | None = None
) -> None:
    """Check a data request against the catalogue and the purpose vocabulary (every problem,
    as :class:`~consent.errors.TermsInvalid`)."""
    problems = _catalogue_problems(
        request.data_categories,
        request.statistics,
        request.group_by,
        [(request.purpose, None)],
        catalogue,
        vocabulary or city_purposes(),
        {
            "categories": "data_categories",
            "statistics": "statistics",
            "group_by": "group_by",
            "purposes": "purpose",
        },
    )
    if problems:
        raise TermsInvalid(problems)
