"""Eviction policies: which entry a full cache backend drops.

A policy is a small frozen object handed to a backend
(``MemoryBackend(max_size=1000, eviction=LFU())``). Every backend counts an entry's
*uses* (the write that stored it, then each read that returned it) and remembers its
last use; when a write takes the backend over ``max_size``, it drops the entries with
the lowest :meth:`~LRU.rank`, never the entry being written.

* :class:`LRU` (the default) drops the least recently used entry.
* :class:`LFU` drops the entry with the fewest uses; ties go to the least recently used.
  An overwritten entry starts again at one use. Uses are capped at
  :data:`MAX_COUNTED_USES` so that a long-lived favourite can still age out.

Each backend keeps the order natively: :class:`UseOrder` (a heap with lazy deletion)
for :class:`~oscar_langchain.cache.backends.MemoryBackend`, ``ORDER BY uses,
last_access`` for SQLite, and a sorted set scored by :meth:`LFU.score` for Redis.

Example:
    >>> order = UseOrder(LFU())
    >>> for key, now in [("a", 1.0), ("b", 2.0), ("a", 3.0)]:
    ...     order.touch(key, now)
    >>> order.victims(1, keep="c")  # "b" has one use, "a" two
    ['b']
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import ClassVar

from oscar_langchain.errors import ConfigurationError

__all__ = ["LFU", "LRU", "MAX_COUNTED_USES", "EvictionPolicy", "UseOrder", "check_policy"]

MAX_COUNTED_USES = 1 << 20
"""Uses beyond this count do not raise an entry's LFU rank any further."""

_SEQ_SPAN = 1 << 32


class _UsesAndRecency:
    """Rank = (weighted uses, recency); subclasses choose the weight of uses."""

    by_frequency: ClassVar[bool]
    use_weight: ClassVar[int]
    """What one use adds to :meth:`score` (0: uses do not count)."""

    def rank(self, uses: int, last_used: float) -> tuple[float, float]:
        """Sort key of an entry: the lowest is evicted first."""
        return (float(min(uses, MAX_COUNTED_USES) if self.by_frequency else 0), last_used)

    def score(self, uses: int, seq: int) -> float:
        """The rank as one number, for sorted-set stores (``seq``: a global use counter).

        LFU: ``uses * 2**32 + seq mod 2**32``, exact in a double since uses are capped;
        LRU: ``seq``.
        """
        if not self.use_weight:
            return float(seq)
        return float(min(uses, MAX_COUNTED_USES) * self.use_weight + seq % _SEQ_SPAN)


@dataclass(frozen=True)
class LRU(_UsesAndRecency):
    """Evict the least recently used entry (the default).

    Example:
        >>> LRU().rank(uses=9, last_used=1.0) < LRU().rank(uses=1, last_used=2.0)
        True
    """

    by_frequency: ClassVar[bool] = False
    use_weight: ClassVar[int] = 0


@dataclass(frozen=True)
class LFU(_UsesAndRecency):
    """Evict the least frequently used entry; ties go to the least recently used.

    Example:
        >>> LFU().rank(uses=9, last_used=1.0) < LFU().rank(uses=1, last_used=2.0)
        False
    """

    by_frequency: ClassVar[bool] = True
    use_weight: ClassVar[int] = _SEQ_SPAN


EvictionPolicy = LRU | LFU
"""The eviction policies every backend implements."""


def check_policy(eviction: object) -> EvictionPolicy:
    """``eviction`` if it is a policy (``None``: :class:`LRU`), else a named error."""
    if eviction is None:
        return LRU()
    if not isinstance(eviction, (LRU, LFU)):
        raise ConfigurationError("eviction", f"expected LRU() or LFU(), got {eviction!r}")
    return eviction


_Entry = tuple[tuple[float, float], int, str]


class UseOrder:
    """Uses and ranks of in-process entries: a min-heap on rank with lazy deletion.

    ``touch`` pushes a fresh heap entry and marks the key's previous one stale; stale
    entries are skipped when popped and the heap is rebuilt once they outnumber live
    ones, so every operation is O(log n) amortised. Not thread-safe: the backend's lock
    guards it.

    Args:
        policy: how entries are ranked.
    """

    def __init__(self, policy: EvictionPolicy) -> None:
        self.policy = policy
        self._live: dict[str, tuple[int, _Entry]] = {}
        self._heap: list[_Entry] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def uses(self, key: str) -> int:
        """Uses counted for ``key`` (0 if unknown)."""
        state = self._live.get(key)
        return state[0] if state else 0

    def touch(self, key: str, now: float, *, reset: bool = False) -> None:
        """Count one use of ``key`` at ``now`` (``reset``: a write, back to one use)."""
        state = self._live.get(key)
        uses = 1 if reset or state is None else state[0] + 1
        entry = (self.policy.rank(uses, now), next(self._seq), key)
        self._live[key] = (uses, entry)
        heapq.heappush(self._heap, entry)
        if len(self._heap) > 2 * len(self._live) + 64:
            self._heap = [e for _, e in self._live.values()]
            heapq.heapify(self._heap)

    def discard(self, key: str) -> None:
        """Forget ``key``."""
        self._live.pop(key, None)

    def clear(self) -> None:
        """Forget every key."""
        self._live.clear()
        self._heap.clear()

    def victims(self, count: int, keep: str) -> list[str]:
        """Remove and return the ``count`` lowest-ranked keys other than ``keep``."""
        out: list[str] = []
        kept: _Entry | None = None
        while len(out) < count and self._heap:
            entry = heapq.heappop(self._heap)
            state = self._live.get(entry[2])
            if state is None or state[1] is not entry:
                continue  # stale
            if entry[2] == keep:
                kept = entry
                continue
            del self._live[entry[2]]
            out.append(entry[2])
        if kept is not None:
            heapq.heappush(self._heap, kept)
        return out
