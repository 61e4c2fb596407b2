"""Slowing down guessing from one address, in memory (per process), on top of per-account lockout.

Property: after ``limit`` failed attempts from one client address within ``window`` seconds, further
attempts from it are refused until the oldest failure leaves the window.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable


class LoginThrottle:
    def __init__(
        self, limit: int = 20, window: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] <= now - self._window:
            q.popleft()
        return q

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        with self._lock:
            now = self._clock()
            q = self._prune(key, now)
            if len(q) < self._limit:
                return 0
            return max(1, math.ceil(q[0] + self._window - now))

    def record_failure(self, key: str) -> None:
        with self._lock:
            self._prune(key, self._clock()).append(self._clock())

    def record_success(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
