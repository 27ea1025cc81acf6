"""Per-route limits: in-flight calls, requests and tokens per window, spend budgets.

A limit store answers two questions atomically: *may this call start now?*
(:meth:`MemoryLimitStore.try_acquire`, which also books the call) and *how much is
used?* (:meth:`MemoryLimitStore.usage`). A booked call is settled with its real token
count and cost when it ends (:meth:`MemoryLimitStore.release`), so estimates never
drift into the budget. Windows are sliding (a log of the last ``window`` seconds),
not fixed buckets, so a burst at a minute boundary cannot double the rate.

:class:`MemoryLimitStore` is exact under threads and asyncio in one process;
``RedisLimitStore`` (in ``redis_limits.py``) is exact across processes.

Example:
    >>> from oscar_langchain.routing.route import Route
    >>> now = [0.0]
    >>> store = MemoryLimitStore(clock=lambda: now[0])
    >>> r = Route(name="a", runnable=None, rpm=2)
    >>> [isinstance(store.try_acquire(r, tokens=10, cost=0.0), Reservation) for _ in range(3)]
    [True, True, False]
    >>> now[0] = 61.0
    >>> isinstance(store.try_acquire(r, tokens=10, cost=0.0), Reservation)
    True
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.routing.route import Route

__all__ = ["LimitStore", "MemoryLimitStore", "Reservation", "Usage", "limit_reason"]

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Usage:
    """How much of a route's limits is in use now.

    Attributes:
        in_flight: calls running.
        requests: calls started in the current window.
        tokens: tokens booked in the current window.
        spent: USD spent (and booked for running calls).
    """

    in_flight: int = 0
    requests: int = 0
    tokens: int = 0
    spent: float = 0.0


@dataclass(frozen=True, slots=True)
class Reservation:
    """A booked call; give it back to :meth:`LimitStore.release` when the call ends."""

    route: str
    id: str
    tokens: int
    cost: float
    at: float
    backend: str = "memory"


def limit_reason(route: Route, usage: Usage, tokens: int, cost: float) -> str | None:
    """Why a call of ``tokens``/``cost`` would break ``route``'s limits (``None``: it fits)."""
    if route.max_in_flight is not None and usage.in_flight >= route.max_in_flight:
        return f"in-flight limit reached ({usage.in_flight}/{route.max_in_flight})"
    if route.rpm is not None and usage.requests >= route.rpm:
        return f"rpm limit reached ({usage.requests}/{route.rpm})"
    if route.tpm is not None and usage.tokens + tokens > route.tpm:
        return f"tpm limit: {usage.tokens} used + {tokens} > {route.tpm}"
    if route.budget is not None and usage.spent + cost > route.budget + _EPS:
        return f"budget exhausted: ${usage.spent:.4f} spent + ${cost:.4f} > ${route.budget:.4f}"
    return None


class LimitStore(Protocol):
    """What the router needs of a limit store (memory or Redis)."""

    def try_acquire(self, route: Route, *, tokens: int, cost: float) -> Reservation | str:
        """Book a call if it fits all of ``route``'s limits, else return the reason."""

    def release(
        self, reservation: Reservation, *, tokens: int | None = None, cost: float | None = None
    ) -> None:
        """End a booked call, settling its real ``tokens``/``cost`` when known."""

    def usage(self, names: Iterable[str]) -> dict[str, Usage]:
        """Current usage of the named routes."""

    def describe(self) -> str:
        """Where limits are kept (``"memory"``, ``"redis"``, ``"local (redis down)"``)."""


@dataclass(slots=True)
class _Entry:
    at: float
    tokens: int
    live: bool = True


@dataclass(slots=True)
class _RouteLimits:
    log: deque[_Entry] = field(default_factory=deque)
    by_id: dict[str, _Entry] = field(default_factory=dict)
    tokens: int = 0
    in_flight: int = 0
    spent: float = 0.0


class MemoryLimitStore:
    """Limits kept in this process; one short lock guards bookkeeping, never a call.

    Args:
        window: length of the rpm/tpm sliding window in seconds.
        clock: time source in seconds (injected in tests).
    """

    def __init__(self, *, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        if window <= 0:
            raise ConfigurationError("MemoryLimitStore.window", f"must be > 0, got {window!r}")
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._routes: dict[str, _RouteLimits] = {}
        self._ids = itertools.count()

    def _state(self, name: str, now: float) -> _RouteLimits:
        state = self._routes.get(name)
        if state is None:
            state = self._routes[name] = _RouteLimits()
        horizon = now - self.window
        log = state.log
        while log and log[0].at <= horizon:
            entry = log.popleft()
            entry.live = False
            state.tokens -= entry.tokens
        return state

    @staticmethod
    def _usage(state: _RouteLimits) -> Usage:
        return Usage(state.in_flight, len(state.log), state.tokens, state.spent)

    def try_acquire(self, route: Route, *, tokens: int, cost: float) -> Reservation | str:
        """Book a call on ``route`` if it fits every limit; else return the reason."""
        with self._lock:
            now = self.clock()
            state = self._state(route.name, now)
            reason = limit_reason(route, self._usage(state), tokens, cost)
            if reason is not None:
                return reason
            rid = f"m{next(self._ids)}"
            entry = _Entry(now, tokens)
            state.log.append(entry)
            state.by_id[rid] = entry
            state.tokens += tokens
            state.in_flight += 1
            state.spent += cost
            return Reservation(route.name, rid, tokens, cost, now)

    def release(
        self, reservation: Reservation, *, tokens: int | None = None, cost: float | None = None
    ) -> None:
        """End a booked call; real ``tokens``/``cost`` replace the booked estimates."""
        with self._lock:
            state = self._state(reservation.route, self.clock())
            entry = state.by_id.pop(reservation.id, None)
            if entry is None:
                return  # released twice: nothing more to give back
            state.in_flight = max(0, state.in_flight - 1)
            if tokens is not None and entry.live:
                state.tokens += tokens - entry.tokens
                entry.tokens = tokens
            if cost is not None:
                state.spent = max(0.0, state.spent + cost - reservation.cost)

    def usage(self, names: Iterable[str]) -> dict[str, Usage]:
        """Current usage of the named routes."""
        with self._lock:
            now = self.clock()
            return {name: self._usage(self._state(name, now)) for name in names}

    def reset(self, name: str | None = None) -> None:
        """Forget the usage (and spend) of route ``name``, or of every route."""
        with self._lock:
            if name is None:
                self._routes.clear()
            else:
                self._routes.pop(name, None)

    def describe(self) -> str:
        """Where limits are kept."""
        return "memory"
