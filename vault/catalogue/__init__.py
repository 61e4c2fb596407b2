"""The catalogue of stream types: what a citizen may store, field by field, kept as data.

The catalogue lives in ``stream_types.json`` next to this module. :meth:`Catalogue.load` reads and
checks it (nothing happens at import time); :func:`default_catalogue` caches the result for the
process. Every later step relies on what the check guarantees:

* stream type names are unique, dotted lower-case words of at most 64 characters;
* every stream type has a required timestamp field named ``ts``;
* field names are unique lower-case identifiers; each type is one of :data:`FIELD_TYPES`;
* numeric fields (``float``, ``int``) may carry finite ``min``/``max`` bounds with ``min <= max``
  (whole numbers for ``int``); only ``category`` fields carry ``categories`` (non-empty, unique);
* a public dimension is a ``category`` field whose domain is its category list, and the stream
  type's ``dimensions`` list names exactly those fields, with exactly that domain;
* ``statistics`` always include ``count``; ``sum``, ``mean``, ``quantile`` and ``histogram`` are
  only allowed on numeric fields with both bounds (a release needs a known range).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, cast

import polars as pl

from vault.errors import NotFound

FieldType = Literal["timestamp", "float", "int", "category", "string"]

FIELD_TYPES = ("timestamp", "float", "int", "category", "string")
NUMERIC_TYPES = frozenset({"float", "int"})
STATISTICS = ("count", "sum", "mean", "quantile", "histogram")
BOUNDED_STATISTICS = frozenset({"sum", "mean", "quantile", "histogram"})
FORMAT_VERSION = 1
MAX_NAME_LENGTH = 64

_STREAM_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*")

_STREAM_KEYS = frozenset({"name", "schema_version", "title", "description", "fields", "dimensions"})
_FIELD_REQUIRED_KEYS = frozenset({"name", "type", "required", "description", "public_dimension"})
_FIELD_OPTIONAL_KEYS = frozenset(
    {"unit", "min", "max", "categories", "category_labels", "statistics"}
)
_DIMENSION_KEYS = frozenset({"name", "title", "domain"})
_RESOURCE = "stream_types.json"


class CatalogueError(ValueError):
    """The catalogue data is malformed. A deployment bug: raised by :meth:`Catalogue.load`."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a stream type, as checked by the loader.

    ``min``/``max`` are set only for numeric fields (either may be ``None``: unbounded on that
    side); ``categories`` is non-empty exactly for ``category`` fields; ``category_labels`` holds
    optional plain-words labels for some categories, as ``(category, label)`` pairs.
    """

    name: str
    type: FieldType
    description: str
    required: bool = True
    unit: str | None = None
    min: int | float | None = None
    max: int | float | None = None
    categories: tuple[str, ...] = ()
    category_labels: tuple[tuple[str, str], ...] = ()
    public_dimension: bool = False
    statistics: tuple[str, ...] = ("count",)

    @property
    def is_numeric(self) -> bool:
        return self.type in NUMERIC_TYPES

    @property
    def is_bounded(self) -> bool:
        """True for a numeric field with both a lower and an upper bound."""
        return self.is_numeric and self.min is not None and self.max is not None

    def polars_dtype(self) -> pl.DataType:
        """The column type a validated batch holds for this field.

        ``timestamp`` is ``Datetime("us", "UTC")``, ``float`` is ``Float64``, ``int`` is ``Int64``,
        ``category`` and ``string`` are ``String``.
        """
        if self.type == "timestamp":
            return pl.Datetime("us", "UTC")
        if self.type == "float":
            return pl.Float64()
        if self.type == "int":
            return pl.Int64()
        return pl.String()

    def to_public_dict(self) -> dict[str, Any]:
        """The field as served to clients; every key is always present (``None`` when unused)."""
        return {
            "name": self.name,
            "type": self.type,
            "unit": self.unit,
            "required": self.required,
            "description": self.description,
            "min": self.min,
            "max": self.max,
            "categories": list(self.categories) if self.type == "category" else None,
            "category_labels": dict(self.category_labels) if self.category_labels else None,
            "public_dimension": self.public_dimension,
            "statistics": list(self.statistics),
        }


@dataclass(frozen=True, slots=True)
class Dimension:
    """A public grouping dimension: a category field whose list of values is public."""

    name: str
    title: str
    domain: tuple[str, ...]

    def to_public_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "domain": list(self.domain)}


@dataclass(frozen=True, slots=True)
class StreamType:
    """A kind of data a citizen can store, with its fields in catalogue order."""

    name: str
    schema_version: int
    title: str
    description: str
    fields: tuple[FieldSpec, ...]
    public_dimensions: tuple[Dimension, ...] = ()

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.fields)

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``; raises :class:`NotFound` naming the known fields."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        known = ", ".join(self.field_names)
        raise NotFound(
            f"stream type {self.name!r} has no field {name!r}; its fields are: {known}",
            details=[{"field": name, "reason": f"unknown field; known fields: {known}"}],
        )

    def polars_schema(self) -> pl.Schema:
        """Column names and types of a validated batch, in catalogue order."""
        return pl.Schema([(spec.name, spec.polars_dtype()) for spec in self.fields])

    def to_public_dict(self) -> dict[str, Any]:
        """The stream type as served at ``GET /v1/stream-types``."""
        return {
            "name": self.name,
            "schema_version": self.schema_version,
            "title": self.title,
            "description": self.description,
            "fields": [spec.to_public_dict() for spec in self.fields],
            "dimensions": [dim.to_public_dict() for dim in self.public_dimensions],
        }


@dataclass(frozen=True, slots=True)
class Catalogue:
    """All stream types, in catalogue order. Build with :meth:`load` or :meth:`from_dict`."""

    stream_types: tuple[StreamType, ...]

    @classmethod
    def load(cls) -> Catalogue:
        """Read and check the packaged ``stream_types.json``; raises :class:`CatalogueError`."""
        text = resources.files(__name__).joinpath(_RESOURCE).read_text(encoding="utf-8")
        return cls.from_json(text)

    @classmethod
    def from_json(cls, text: str) -> Catalogue:
        """Parse and check catalogue JSON text; raises :class:`CatalogueError` on any problem."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CatalogueError(f"the catalogue is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> Catalogue:
        """Check decoded catalogue data and build the catalogue.

        Raises :class:`CatalogueError` with a message naming the stream type, the field and the
        problem for anything the module docstring rules out.
        """
        top = _mapping(data, "the catalogue", {"format_version", "stream_types"}, frozenset())
        if top["format_version"] != FORMAT_VERSION or isinstance(top["format_version"], bool):
            raise CatalogueError(
                f"the catalogue: format_version must be {FORMAT_VERSION}, "
                f"got {top['format_version']!r}"
            )
        raw_types = top["stream_types"]
        if not isinstance(raw_types, list) or not raw_types:
            raise CatalogueError("the catalogue: stream_types must be a non-empty list")
        stream_types: list[StreamType] = []
        seen: set[str] = set()
        for position, raw in enumerate(raw_types):
            stream_type = _stream_type(raw, position)
            if stream_type.name in seen:
                raise CatalogueError(f"stream type {stream_type.name!r} is listed twice")
            seen.add(stream_type.name)
            stream_types.append(stream_type)
        return cls(tuple(stream_types))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(st.name for st in self.stream_types)

    def get(self, name: str) -> StreamType:
        """The stream type called ``name``; raises :class:`NotFound` listing the known ones."""
        for stream_type in self.stream_types:
            if stream_type.name == name:
                return stream_type
        known = ", ".join(self.names)
        raise NotFound(
            f"unknown stream type {name!r}; known stream types are: {known}",
            details=[{"field": "stream_type", "reason": f"unknown stream type {name!r}"}],
        )

    def to_public_dict(self) -> dict[str, Any]:
        """The whole catalogue as served at ``GET /v1/stream-types``."""
        return {"stream_types": [st.to_public_dict() for st in self.stream_types]}


@functools.lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    """The packaged catalogue, loaded and checked on first use, then shared by the process."""
    return Catalogue.load()


# --------------------------------------------------------------------------------------------------
# Checking the data
# --------------------------------------------------------------------------------------------------


def _mapping(
    value: object, where: str, required: frozenset[str] | set[str], optional: frozenset[str]
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CatalogueError(f"{where}: expected a JSON object, got {type(value).__name__}")
    missing = sorted(set(required) - value.keys())
    if missing:
        raise CatalogueError(f"{where}: missing key(s) {', '.join(missing)}")
    unknown = sorted(value.keys() - set(required) - optional)
    if unknown:
        raise CatalogueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    return cast(dict[str, Any], value)


def _text(value: object, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CatalogueError(f"{where}: {key} must be non-empty text, got {value!r}")
    return value


def _flag(value: object, where: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise CatalogueError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _number(value: object, where: str, key: str, whole: bool) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CatalogueError(f"{where}: {key} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise CatalogueError(f"{where}: {key} must be a finite number, got {value!r}")
    if whole and not isinstance(value, int):
        raise CatalogueError(
            f"{where}: {key} of an int field must be a whole number, got {value!r}"
        )
    return value


def _names(value: object, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise CatalogueError(f"{where}: {key} must be a non-empty list")
    items = tuple(_text(item, where, f"each of {key}") for item in value)
    duplicates = sorted({item for item in items if items.count(item) > 1})
    if duplicates:
        raise CatalogueError(f"{where}: {key} lists {', '.join(map(repr, duplicates))} twice")
    return items


def _field(raw: object, stream_name: str, position: int) -> FieldSpec:
    where = f"stream type {stream_name!r}, field #{position + 1}"
    data = _mapping(raw, where, _FIELD_REQUIRED_KEYS, _FIELD_OPTIONAL_KEYS)
    name = _text(data["name"], where, "name")
    if not _FIELD_NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise CatalogueError(
            f"{where}: name {name!r} must be lower-case letters, digits and underscores, "
            f"starting with a letter, at most {MAX_NAME_LENGTH} characters"
        )
    where = f"stream type {stream_name!r}, field {name!r}"
    kind = data["type"]
    if kind not in FIELD_TYPES:
        raise CatalogueError(
            f"{where}: unknown type {kind!r}; the types are: {', '.join(FIELD_TYPES)}"
        )
    field_type = cast(FieldType, kind)
    numeric = field_type in NUMERIC_TYPES

    unit = data.get("unit")
    if unit is not None:
        unit = _text(unit, where, "unit")

    for key in ("min", "max"):
        if not numeric and data.get(key) is not None:
            raise CatalogueError(f"{where}: {key} is only allowed on float and int fields")
    low = _number(data.get("min"), where, "min", whole=field_type == "int")
    high = _number(data.get("max"), where, "max", whole=field_type == "int")
    if low is not None and high is not None and low > high:
        raise CatalogueError(f"{where}: min ({low}) is greater than max ({high})")

    categories: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    if field_type == "category":
        if "categories" not in data:
            raise CatalogueError(f"{where}: a category field needs a categories list")
        categories = _names(data["categories"], where, "categories")
        raw_labels = data.get("category_labels")
        if raw_labels is not None:
            if not isinstance(raw_labels, dict):
                raise CatalogueError(f"{where}: category_labels must be a JSON object")
            strange = sorted(set(raw_labels) - set(categories))
            if strange:
                raise CatalogueError(
                    f"{where}: category_labels names unknown categories {', '.join(strange)}"
                )
            labels = tuple(
                (key, _text(raw_labels[key], where, f"category_labels[{key!r}]"))
                for key in categories
                if key in raw_labels
            )
    else:
        for key in ("categories", "category_labels"):
            if key in data:
                raise CatalogueError(f"{where}: {key} is only allowed on category fields")

    public = _flag(data["public_dimension"], where, "public_dimension")
    if public and field_type != "category":
        raise CatalogueError(
            f"{where}: only a category field can be a public dimension (its domain is public)"
        )

    statistics: tuple[str, ...] = ("count",)
    if "statistics" in data:
        statistics = _names(data["statistics"], where, "statistics")
        unknown = [s for s in statistics if s not in STATISTICS]
        if unknown:
            raise CatalogueError(
                f"{where}: unknown statistic(s) {', '.join(unknown)}; "
                f"the statistics are: {', '.join(STATISTICS)}"
            )
        if "count" not in statistics:
            raise CatalogueError(f"{where}: statistics must include count")
        bounded = numeric and low is not None and high is not None
        needs_bounds = [s for s in statistics if s in BOUNDED_STATISTICS]
        if needs_bounds and not bounded:
            raise CatalogueError(
                f"{where}: {', '.join(needs_bounds)} need a numeric field with min and max"
            )

    return FieldSpec(
        name=name,
        type=field_type,
        description=_text(data["description"], where, "description"),
        required=_flag(data["required"], where, "required"),
        unit=unit,
        min=low,
        max=high,
        categories=categories,
        category_labels=labels,
        public_dimension=public,
        statistics=statistics,
    )


def _dimension(raw: object, stream_name: str, fields: dict[str, FieldSpec]) -> Dimension:
    where = f"stream type {stream_name!r}, dimensions"
    data = _mapping(raw, where, _DIMENSION_KEYS, frozenset())
    name = _text(data["name"], where, "name")
    where = f"stream type {stream_name!r}, dimension {name!r}"
    spec = fields.get(name)
    if spec is None or not spec.public_dimension:
        raise CatalogueError(f"{where}: must name a field marked public_dimension")
    domain = _names(data["domain"], where, "domain")
    if domain != spec.categories:
        raise CatalogueError(f"{where}: domain must equal the field's categories, in order")
    return Dimension(name=name, title=_text(data["title"], where, "title"), domain=domain)


def _stream_type(raw: object, position: int) -> StreamType:
    where = f"stream type #{position + 1}"
    data = _mapping(raw, where, _STREAM_KEYS, frozenset())
    name = _text(data["name"], where, "name")
    if not _STREAM_NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise CatalogueError(
            f"{where}: name {name!r} must be dotted lower-case words "
            f"(like energy.consumption), at most {MAX_NAME_LENGTH} characters"
        )
    where = f"stream type {name!r}"
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CatalogueError(f"{where}: schema_version must be a whole number >= 1")

    raw_fields = data["fields"]
    if not isinstance(raw_fields, list) or not raw_fields:
        raise CatalogueError(f"{where}: fields must be a non-empty list")
    fields: dict[str, FieldSpec] = {}
    for index, raw_field in enumerate(raw_fields):
        spec = _field(raw_field, name, index)
        if spec.name in fields:
            raise CatalogueError(f"{where}: field {spec.name!r} is listed twice")
        fields[spec.name] = spec
    ts = fields.get("ts")
    if ts is None or ts.type != "timestamp" or not ts.required:
        raise CatalogueError(f"{where}: needs a required timestamp field named 'ts'")

    raw_dimensions = data["dimensions"]
    if not isinstance(raw_dimensions, list):
        raise CatalogueError(f"{where}: dimensions must be a list")
    dimensions = tuple(_dimension(item, name, fields) for item in raw_dimensions)
    named = [dim.name for dim in dimensions]
    if len(set(named)) != len(named):
        raise CatalogueError(f"{where}: a dimension is listed twice")
    undeclared = [s.name for s in fields.values() if s.public_dimension and s.name not in named]
    if undeclared:
        raise CatalogueError(
            f"{where}: public dimension field(s) {', '.join(undeclared)} are missing from "
            "dimensions"
        )

    return StreamType(
        name=name,
        schema_version=version,
        title=_text(data["title"], where, "title"),
        description=_text(data["description"], where, "description"),
        fields=tuple(fields.values()),
        public_dimensions=dimensions,
    )


@functools.lru_cache(maxsize=1)
def default_catalogue_json() -> dict[str, Any]:
    """The packaged catalogue as decoded JSON, for the consent package (which reads it as data)."""
    text = resources.files(__name__).joinpath(_RESOURCE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
