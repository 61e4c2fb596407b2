"""The one canonical JSON encoding of the project.

Everything that is hashed or signed (consent terms, audit entries, bundle manifests, associated data
of encrypted chunks) is encoded by :func:`canonical_json`, so that two parties who hold equal values
produce equal bytes.

The encoding follows RFC 8785 (JSON Canonicalization Scheme) for the values we use:

* object keys sorted by Unicode code point, no insignificant white space, UTF-8 output;
* strings escaped as ``json.dumps`` does with ``ensure_ascii=False`` (only ``"``, ``\\`` and control
  characters are escaped);
* integers written in full; floats that hold an integral value below 2**53 written as integers
  (``1.0`` becomes ``1``), other floats in Python's shortest round-trip form;
* ``NaN`` and infinities are refused, as are non-string keys and values that are not JSON.
"""

from __future__ import annotations

import json
import math
from types import NoneType
from typing import Any

_MAX_EXACT_FLOAT_INT = 2**53


class CanonicalJSONError(ValueError):
    """A value cannot be written as canonical JSON."""


#: Values written as they are: items of exactly these types skip the call (and the path text)
#: below, which most of a document's values are. Subclasses take the call and come out the same.
_AS_IS = frozenset({str, int, bool, NoneType})


def _normalise(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalJSONError(f"{path}: {value!r} is not a finite number")
        if value.is_integer() and abs(value) < _MAX_EXACT_FLOAT_INT:
            return int(value)
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJSONError(f"{path}: object key {key!r} is not a string")
            out[key] = item if type(item) in _AS_IS else _normalise(item, f"{path}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [
            item if type(item) in _AS_IS else _normalise(item, f"{path}[{i}]")
            for i, item in enumerate(value)
        ]
    raise CanonicalJSONError(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes (see the module docstring for the rules)."""
    return json.dumps(
        _normalise(value, "$"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")
