"""The one canonical JSON encoding (consent.canonical): checked against a plain reading of its rules
for any JSON-like value, including its refusals and the place they name."""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.canonical import CanonicalJSONError, canonical_json


def _reference(value: Any) -> Any:
    """The module's rules, read plainly: integral floats below 2**53 as integers, no NaN or
    infinity, string keys only, tuples as lists."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalJSONError("not finite")
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise CanonicalJSONError("key")
        return {k: _reference(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_reference(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise CanonicalJSONError("not JSON")


def _expected(value: Any) -> bytes:
    return json.dumps(
        _reference(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from([Colour.RED, Name("x"), 2.0**53, -(2.0**53), 1e300, -0.0])
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(value=values)
def test_canonical_json_follows_its_rules_for_any_value(value: Any) -> None:
    try:
        expected = _expected(value)
    except (CanonicalJSONError, TypeError):
        # Refused by the rules (TypeError: json cannot sort keys of mixed types, which only
        # happens with a non-string key, refused as well).
        with pytest.raises(CanonicalJSONError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [1, {"b": float("nan")}]}, "$.a[1].b: nan is not a finite number"),
        ({"a": {"b": [0, 1, float("inf")]}}, "$.a.b[2]: inf is not a finite number"),
        ({"a": [{1: "x"}]}, "$.a[0]: object key 1 is not a string"),
        ([1, {"x": {1, 2}}], "$[1].x: set is not a JSON value"),
    ],
)
def test_a_refusal_names_the_place(value: Any, where: str) -> None:
    with pytest.raises(CanonicalJSONError) as caught:
        canonical_json(value)
    assert str(caught.value) == where
