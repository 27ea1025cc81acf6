"""Sliding windows of call outcomes for the circuit breaker, O(1) per call.

A :class:`CountWindow` keeps the last ``size`` calls in a ring buffer; a
:class:`TimeWindow` keeps the calls of the last ``seconds`` in ``buckets`` buckets of
equal width. Both keep running totals, so reading the counts is O(1) and recording a
call is O(1) (amortised O(1) for the time window, which clears at most ``buckets``
stale buckets when time jumps). Both serialise to plain JSON-able dicts so a shared
store (Redis) can keep them.

Example:
    >>> w = CountWindow(3)
    >>> for failed in (True, False, True, False):
    ...     w.record(0.0, failed=failed, slow=False)
    >>> w.counts(0.0)
    WindowCounts(calls=3, failures=1, slow=0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["CountWindow", "TimeWindow", "Window", "WindowCounts"]

_CALL, _FAILED, _SLOW = 1, 2, 4


@dataclass(frozen=True)
class WindowCounts:
    """Totals over a window: calls, failed calls and slow calls."""

    calls: int
    failures: int
    slow: int

    @property
    def failure_rate(self) -> float:
        """Failed calls / calls (0.0 for an empty window)."""
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        """Slow calls / calls (0.0 for an empty window)."""
        return self.slow / self.calls if self.calls else 0.0


def _code(failed: bool, slow: bool) -> int:
    return _CALL | (_FAILED if failed else 0) | (_SLOW if slow else 0)


class CountWindow:
    """The last ``size`` calls, in a ring buffer with running totals."""

    kind = "count"

    def __init__(self, size: int) -> None:
        self.size = size
        self.ring = [0] * size
        self.pos = 0
        self.calls = self.failures = self.slow = 0

    def record(self, now: float, *, failed: bool, slow: bool) -> None:
        """Add one call (``now`` is unused: the window is counted in calls)."""
        pos = self.pos
        old = self.ring[pos]
        if old == _CALL and not (failed or slow):  # a success replacing a success
            self.pos = (pos + 1) % self.size
            return
        if old:
            self.calls -= 1
            self.failures -= (old & _FAILED) >> 1
            self.slow -= (old & _SLOW) >> 2
        code = _code(failed, slow)
        self.ring[pos] = code
        self.pos = (pos + 1) % self.size
        self.calls += 1
        self.failures += (code & _FAILED) >> 1
        self.slow += (code & _SLOW) >> 2

    def counts(self, now: float) -> WindowCounts:
        """Totals over the window."""
        return WindowCounts(self.calls, self.failures, self.slow)

    def reset(self) -> None:
        """Forget every call."""
        self.ring = [0] * self.size
        self.pos = 0
        self.calls = self.failures = self.slow = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (the ring as a compact string of digits)."""
        return {"ring": "".join(str(c) for c in self.ring), "pos": self.pos}

    def load(self, data: dict[str, Any]) -> None:
        """Restore from :meth:`to_dict` output of a window of the same size."""
        ring = [int(c) for c in str(data.get("ring", ""))]
        if len(ring) != self.size:
            self.reset()  # window size changed: start afresh rather than guess
            return
        self.ring = ring
        self.pos = int(data.get("pos", 0)) % self.size
        self.calls = sum(1 for c in ring if c)
        self.failures = sum(1 for c in ring if c & _FAILED)
        self.slow = sum(1 for c in ring if c & _SLOW)


class TimeWindow:
    """The calls of the last ``seconds``, in ``buckets`` equal buckets with running totals.

    Bucket ``i`` holds the calls made at times ``t`` with ``floor(t / width) == i``;
    the window covers the current bucket and the ``buckets - 1`` before it. A clock
    that steps backwards records into the newest bucket.
    """

    kind = "time"

    def __init__(self, seconds: float, buckets: int) -> None:
        self.seconds = seconds
        self.buckets = buckets
        self.width = seconds / buckets
        self.reset()

    def reset(self) -> None:
        """Forget every call."""
        n = self.buckets
        self.head: int | None = None
        self.b_calls = [0] * n
        self.b_failures = [0] * n
        self.b_slow = [0] * n
        self.calls = self.failures = self.slow = 0

    def _advance(self, now: float) -> int:
        current = math.floor(now / self.width)
        if self.head is None:
            self.head = current
            return current
        if current <= self.head:
            return self.head
        steps = min(current - self.head, self.buckets)
        for k in range(1, steps + 1):
            slot = (self.head + k) % self.buckets
            self.calls -= self.b_calls[slot]
            self.failures -= self.b_failures[slot]
            self.slow -= self.b_slow[slot]
            self.b_calls[slot] = self.b_failures[slot] = self.b_slow[slot] = 0
        self.head = current
        return current

    def record(self, now: float, *, failed: bool, slow: bool) -> None:
        """Add one call made at ``now``."""
        slot = self._advance(now) % self.buckets
        self.b_calls[slot] += 1
        self.calls += 1
        if failed:
            self.b_failures[slot] += 1
            self.failures += 1
        if slow:
            self.b_slow[slot] += 1
            self.slow += 1

    def counts(self, now: float) -> WindowCounts:
        """Totals over the window ending at ``now``."""
        self._advance(now)
        return WindowCounts(self.calls, self.failures, self.slow)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return {
            "head": self.head,
            "calls": self.b_calls,
            "failures": self.b_failures,
            "slow": self.b_slow,
        }

    def load(self, data: dict[str, Any]) -> None:
        """Restore from :meth:`to_dict` output of a window with the same bucket count."""
        calls = [int(x) for x in data.get("calls", [])]
        if len(calls) != self.buckets:
            self.reset()
            return
        head = data.get("head")
        self.head = None if head is None else int(head)
        self.b_calls = calls
        self.b_failures = [int(x) for x in data["failures"]]
        self.b_slow = [int(x) for x in data["slow"]]
        self.calls, self.failures, self.slow = (
            sum(self.b_calls),
            sum(self.b_failures),
            sum(self.b_slow),
        )


Window = CountWindow | TimeWindow
