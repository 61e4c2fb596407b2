"""Errors of the consent package: plain data, free of HTTP.

Every error carries a stable machine ``code`` and, where it is about input, the list of *every*
problem found (not only the first), each as ``{"field": "dotted.path", "reason": "plain words"}``.
Paths use the JSON names of the terms (``dp_limits.epsilon_per_period``, ``data_categories.0.fields.1``)
so that a form can put each message next to its field. Indices refer to the terms as stored, where
set-like lists are sorted (see :mod:`consent.terms`); every reason also quotes the offending value.
The web layer maps these errors to a 422.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict


class Problem(TypedDict):
    """One thing wrong with an input: which field, and why, in plain words."""

    field: str
    reason: str


def problem(field: str, reason: str) -> Problem:
    """Build a :class:`Problem` (a tiny helper so call sites read as sentences)."""
    return {"field": field, "reason": reason}


class ConsentError(Exception):
    """Base class of the consent package's errors."""

    code: str = "consent_error"


class _ProblemsError(ConsentError):
    """An error that lists every problem found, each naming its field."""

    def __init__(self, problems: Iterable[Problem], summary: str) -> None:
        self.problems: list[Problem] = list(problems)
        lines = "; ".join(f"{p['field']}: {p['reason']}" for p in self.problems)
        super().__init__(f"{summary}: {lines}" if lines else summary)


class TermsInvalid(_ProblemsError):
    """Consent terms (or a data request, or an import) that are malformed or contradict themselves.

    ``problems`` lists every problem found. Structural problems (a value of the wrong type, a
    missing field) are reported together first; once the structure is right, every semantic
    problem (``not_after`` before ``not_before``, ``epsilon <= 0``, an unknown stream type, field,
    purpose or dimension, a statistic the stream cannot support...) is reported together.
    """

    code = "terms_invalid"

    def __init__(self, problems: Iterable[Problem]) -> None:
        super().__init__(problems, "the consent terms are not valid")


class NarrowingRefused(_ProblemsError):
    """A citizen's "accept with tighter limits" that would widen the terms somewhere.

    ``problems`` names each widened field, e.g. ``dp_limits.epsilon_per_period``: 2 is more than
    the 1 the request asks for. A narrowing can only narrow.
    """

    code = "narrowing_refused"

    def __init__(self, problems: Iterable[Problem]) -> None:
        super().__init__(problems, "a narrower acceptance can only narrow")


class SignatureInvalid(ConsentError):
    """Signed terms (or a signed event) that must not be relied on.

    ``reason`` says why, as one of: ``bad_signature`` (the bytes do not verify), ``wrong_key``
    (signed by a key other than the subject's), ``bad_key_id``, ``malformed``, ``not_yet_valid``,
    ``expired``, ``withdrawn``, ``superseded``, ``bad_event`` (an event in the history does not
    verify or names other terms). ``detail`` is a plain-words explanation.
    """

    code = "signature_invalid"

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")
