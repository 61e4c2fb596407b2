"""Consent decisions remembered between queries, by the citizens' consent revisions (warm path).

The consent gate's judgment of one stored consent (:mod:`aggregation.consent_gate`) is a function
of three things:

1. its **evidence**: the consent's row, the rows of every version of its terms with their events,
   and the citizen's verify key;
2. the query's **shape**: the :class:`consent.decision.AccessRequest` without its time;
3. the **time** ``at``. Once the evidence verifies, the consent package reads ``at`` only to
   compare it with the terms' validity window ``[not_before, not_after)`` (``judge_at``,
   ``consent_status`` and the decision's time reasons): for every ``at`` inside the window the
   judgment is the same.

The database raises ``citizens.consent_revision`` in the same transaction as any insert, update or
delete of the citizen's consents, consent events and key grants, and any change of their verify
key (triggers of migration 0005; no write path can skip them). :class:`AdmissionMemo` remembers
each judgment under (shape, consent id) with the revision read **before** its evidence was read.

Properties (tests: ``tests/test_change_revisions.py``):

* **A hit is the judgment a fresh gate would make.** It is used only for the same shape, the same
  consent, the same revision and an ``at`` inside the window. A change committed after the revision
  was read raises the revision, so the next query misses; evidence read later than the revision
  can only make the remembered revision older than the truth, which misses too.
* **It decides nothing.** Every judgment it holds was made by the gate's one verification and the
  consent package's one decision function. Judgments without a verified window (a consent that does
  not verify, not yet valid, expired or withdrawn) are not remembered: they are judged every time.
* **Bounded.** At most :data:`MAX_SHAPES` shapes and, beyond the newest shape,
  :data:`MAX_JUDGMENTS` judgments in all (the least recently used shapes go first); erasing a
  citizen empties it (an erasure hook).

Safe to share between threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from consent.decision import AccessRequest

if TYPE_CHECKING:
    from aggregation.consent_gate import AdmittedConsent
    from aggregation.repository import CandidateRevision

#: Query shapes remembered at most (each holds one small entry per candidate consent).
MAX_SHAPES = 16
#: Judgments kept at most over the older shapes (about 300 bytes each); the newest shape is kept
#: whole, as the query that made it held as much.
MAX_JUDGMENTS = 2_000_000

Shape = tuple[object, ...]


def shape_of(request: AccessRequest) -> Shape:
    """Everything of ``request`` the judgment depends on except its time."""
    return (
        request.recipient_kind,
        request.recipient_id,
        request.purpose,
        request.stream_type,
        tuple(request.fields),
        request.operation,
        tuple(request.statistics),
        tuple(request.group_by),
        request.epsilon,
    )


@dataclass(frozen=True, slots=True)
class Judgment:
    """One consent's judgment: ``admitted`` when allowed, ``None`` when refused, valid for any time
    in ``[not_before, not_after)`` while the citizen's consent revision is ``revision``."""

    revision: int
    admitted: AdmittedConsent | None
    not_before: datetime
    not_after: datetime

    def holds_at(self, revision: int, at: datetime) -> bool:
        return revision == self.revision and self.not_before <= at < self.not_after


class AdmissionMemo:
    """Judgments by (query shape, consent id). See the module."""

    def __init__(self, max_shapes: int = MAX_SHAPES, max_judgments: int = MAX_JUDGMENTS) -> None:
        self._max_shapes = max_shapes
        self._max_judgments = max_judgments
        self._shapes: OrderedDict[Shape, dict[str, Judgment]] = OrderedDict()
        self._lock = threading.Lock()

    def recall(
        self, request: AccessRequest, candidates: Sequence[CandidateRevision]
    ) -> tuple[list[AdmittedConsent], list[CandidateRevision], dict[str, Judgment]]:
        """(the remembered admissions among ``candidates`` that hold at ``request.at``, the
        candidates that must be judged, every remembered judgment that holds, by consent id).
        Candidates remembered as refused are in neither list."""
        shape = shape_of(request)
        with self._lock:
            known = self._shapes.get(shape)
            if known is not None:
                self._shapes.move_to_end(shape)
        if not known:
            return [], list(candidates), {}
        admitted: list[AdmittedConsent] = []
        unknown: list[CandidateRevision] = []
        holding: dict[str, Judgment] = {}
        at = request.at
        for candidate in candidates:
            judgment = known.get(candidate.consent_id)
            if judgment is None or not judgment.holds_at(candidate.revision, at):
                unknown.append(candidate)
                continue
            holding[candidate.consent_id] = judgment
            if judgment.admitted is not None:
                admitted.append(judgment.admitted)
        return admitted, unknown, holding

    def remember(self, request: AccessRequest, judgments: dict[str, Judgment]) -> None:
        """Keep ``judgments`` (by consent id) as the shape's whole memory: the judgments that
        held plus the new ones, so consents that are no longer candidates drop out."""
        shape = shape_of(request)
        with self._lock:
            self._shapes[shape] = judgments
            self._shapes.move_to_end(shape)
            held = sum(len(v) for v in self._shapes.values())
            while len(self._shapes) > 1 and (
                len(self._shapes) > self._max_shapes or held > self._max_judgments
            ):
                held -= len(self._shapes.popitem(last=False)[1])

    def forget(self) -> None:
        """Drop every judgment (a citizen was erased)."""
        with self._lock:
            self._shapes.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._shapes.values())
