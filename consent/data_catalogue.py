"""What data exists, as consent sees it: stream types, their fields, the statistics each field
supports, and the public grouping dimensions with their domains.

The vault owns the catalogue (``vault/catalogue/stream_types.json``) and checks it thoroughly; the
consent package must not import the vault, so the caller reads that JSON and passes the *parsed
dict* to :meth:`DataCatalogue.from_catalogue_json`. Nothing here reads files.

A :class:`DataCatalogue` is immutable. Validation of terms and data requests takes one, so that
"unknown stream type", "unknown field", "a statistic the stream cannot support" and "not a public
dimension" are decided against the same catalogue the vault enforces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Statistic = Literal["count", "sum", "mean", "quantile", "histogram"]

STATISTICS: tuple[Statistic, ...] = ("count", "sum", "mean", "quantile", "histogram")
# Every statistic consent terms can allow, in the order plain-language texts list them.


class CatalogueDataError(ValueError):
    """The catalogue dict handed to :meth:`DataCatalogue.from_catalogue_json` is malformed."""


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One field of a stream type: its name, type, plain description and supported statistics."""

    name: str
    type: str
    description: str
    unit: str | None
    statistics: frozenset[str]
    public_dimension: bool


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One stream type and its fields."""

    name: str
    title: str
    description: str
    fields: tuple[FieldInfo, ...]

    def field(self, name: str) -> FieldInfo | None:
        """The field called ``name``, or ``None``."""
        return next((f for f in self.fields if f.name == name), None)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True, slots=True)
class DimensionInfo:
    """A public grouping dimension (a category field whose values are public group keys)."""

    name: str
    stream_type: str
    title: str
    domain: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DataCatalogue:
    """The stream types and public dimensions consent terms may refer to.

    Dimension names are unique across the catalogue: terms name a grouping dimension (``district``)
    without its stream type, and the vault resolves it to the stream that holds it (``profile``).
    """

    streams: tuple[StreamInfo, ...]
    dimensions: tuple[DimensionInfo, ...]

    def stream(self, name: str) -> StreamInfo | None:
        """The stream type called ``name``, or ``None``."""
        return next((s for s in self.streams if s.name == name), None)

    def dimension(self, name: str) -> DimensionInfo | None:
        """The public dimension called ``name``, or ``None``."""
        return next((d for d in self.dimensions if d.name == name), None)

    @classmethod
    def from_catalogue_json(cls, data: Mapping[str, Any]) -> DataCatalogue:
        """Read the structure of ``vault/catalogue/stream_types.json`` (already parsed).

        Only what consent needs is read: stream type names, titles and descriptions; field names,
        types, descriptions, units, ``statistics`` (default ``["count"]``) and
        ``public_dimension``; and each stream type's ``dimensions`` (name, title, domain).
        Raises :class:`CatalogueDataError` when the structure is not that of the catalogue, or when
        two stream types declare the same dimension name.
        """
        raw_streams = _get(data, "stream_types", list, "catalogue")
        streams: list[StreamInfo] = []
        dimensions: dict[str, DimensionInfo] = {}
        for i, raw in enumerate(raw_streams):
            where = f"stream_types[{i}]"
            if not isinstance(raw, Mapping):
                raise CatalogueDataError(f"{where} is not an object")
            name = _get(raw, "name", str, where)
            fields: list[FieldInfo] = []
            for j, raw_field in enumerate(_get(raw, "fields", list, where)):
                fwhere = f"{where}.fields[{j}]"
                if not isinstance(raw_field, Mapping):
                    raise CatalogueDataError(f"{fwhere} is not an object")
                stats = raw_field.get("statistics", ["count"])
                if not isinstance(stats, list) or not all(isinstance(s, str) for s in stats):
                    raise CatalogueDataError(f"{fwhere}.statistics is not a list of names")
                unit = raw_field.get("unit")
                fields.append(
                    FieldInfo(
                        name=_get(raw_field, "name", str, fwhere),
                        type=_get(raw_field, "type", str, fwhere),
                        description=str(raw_field.get("description", "")),
                        unit=unit if isinstance(unit, str) else None,
                        statistics=frozenset(stats),
                        public_dimension=bool(raw_field.get("public_dimension", False)),
                    )
                )
            streams.append(
                StreamInfo(
                    name=name,
                    title=str(raw.get("title", name)),
                    description=str(raw.get("description", "")),
                    fields=tuple(fields),
                )
            )
            for k, raw_dim in enumerate(raw.get("dimensions", [])):
                dwhere = f"{where}.dimensions[{k}]"
                if not isinstance(raw_dim, Mapping):
                    raise CatalogueDataError(f"{dwhere} is not an object")
                domain = _get(raw_dim, "domain", list, dwhere)
                dim = DimensionInfo(
                    name=_get(raw_dim, "name", str, dwhere),
                    stream_type=name,
                    title=str(raw_dim.get("title", raw_dim["name"])),
                    domain=tuple(str(v) for v in domain),
                )
                if dim.name in dimensions:
                    raise CatalogueDataError(
                        f"{dwhere}: dimension {dim.name!r} is also declared by "
                        f"{dimensions[dim.name].stream_type!r}"
                    )
                dimensions[dim.name] = dim
        return cls(streams=tuple(streams), dimensions=tuple(dimensions.values()))


def _get(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise CatalogueDataError(f"{where}.{key} is missing or not a {kind.__name__}")
    return value
