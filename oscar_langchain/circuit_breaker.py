"""A circuit breaker for sync and asyncio code, with no lock around the protected call.

:class:`CircuitBreaker` guards calls to one backend. Before a call it asks its
store for a permit (a pure decision of the
:class:`~oscar_langchain.breaker_machine.BreakerMachine`, applied under a short lock
or a Redis compare-and-set); it then makes the call with no lock held, and reports
the outcome. So five concurrent 0.2 s calls take 0.2 s, not 1.0 s as with pybreaker.

Which exceptions count as failures is a policy: by default
``classify_error(exc).counts_as_failure`` (time-outs, 5xx, connection errors, rate
limits and unexplained errors count; bad requests, auth errors and context-length
overflows do not). Listeners receive a :class:`BreakerEvent` for every transition,
every rejected call and every store fallback/recovery; they run after the state
change, outside any lock, and their own errors are logged, never raised.

Example:
    >>> now = [0.0]
    >>> breaker = CircuitBreaker(
    ...     "api", BreakerConfig(window_size=4, minimum_calls=2, open_duration=30),
    ...     clock=lambda: now[0],
    ... )
    >>> def boom():
    ...     raise TimeoutError("slow backend")
    >>> for _ in range(2):
    ...     try:
    ...         breaker.call(boom)
    ...     except TimeoutError:
    ...         pass
    >>> breaker.state
    <CircuitState.OPEN: 'open'>
    >>> breaker.call(lambda: 1)
    Traceback (most recent call last):
    ...
    oscar_langchain.errors.CircuitOpenError: circuit 'api' is open; next probe in 30.000s
    >>> now[0] = 30.0
    >>> breaker.call(lambda: 1), breaker.state
    (1, <CircuitState.CLOSED: 'closed'>)
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Literal, NamedTuple, TypeVar

from oscar_langchain.breaker_machine import (
    Admission,
    BreakerConfig,
    BreakerMachine,
    CircuitState,
    Transition,
)
from oscar_langchain.breaker_store import BreakerStore, InMemoryBreakerStore
from oscar_langchain.errors import CircuitOpenError, classify_error

__all__ = [
    "BreakerConfig",
    "BreakerEvent",
    "BreakerSnapshot",
    "CircuitBreaker",
    "CircuitState",
    "FailurePolicy",
    "Permit",
    "default_failure_policy",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

FailurePolicy = Callable[[BaseException], bool]
"""Decides whether an exception counts against the breaker."""

EventKind = Literal["transition", "rejected", "store_fallback", "store_recovered"]


def default_failure_policy(exc: BaseException) -> bool:
    """Count time-outs, 5xx, connection errors, rate limits and unknown errors.

    Example:
        >>> default_failure_policy(TimeoutError()), default_failure_policy(ValueError("bad"))
        (True, True)
    """
    return classify_error(exc).counts_as_failure


@dataclass(frozen=True)
class BreakerEvent:
    """Something a listener hears about: a transition, a rejection, a store change."""

    kind: EventKind
    breaker: str
    state: CircuitState
    at: float
    from_state: CircuitState | None = None
    reason: str = ""


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker at one moment: state, window counts, rates and time to next probe."""

    name: str
    state: CircuitState
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    time_to_next_probe: float | None
    consecutive_trips: int
    probes_admitted: int
    store: str
    store_degraded: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (state as its string value)."""
        data = asdict(self)
        data["state"] = self.state.value
        return data


class Permit(NamedTuple):
    """Leave to make one call, handed out by :meth:`CircuitBreaker.acquire`."""

    admission: Admission
    """The machine's admission (its generation, and its lease for a probe)."""
    started: float
    """The breaker's clock when the permit was given."""


_ACTIVE: contextvars.ContextVar[tuple[Permit, ...]] = contextvars.ContextVar(
    "oscar_breaker_permits", default=()
)


class CircuitBreaker:
    """Guards calls to one backend (see the module docstring for the behaviour).

    Args:
        name: the breaker's name (and its key in a shared store).
        config: window, thresholds and durations.
        store: where the state lives (default: this process's memory).
        clock: seconds as a float; defaults to ``time.monotonic`` for a local store
            and ``time.time`` for a shared one (processes must agree on the time).
        failure_policy: which exceptions count as failures.
        listeners: called with every :class:`BreakerEvent`.

    Example:
        >>> breaker = CircuitBreaker("db")
        >>> with breaker:
        ...     pass
        >>> breaker.snapshot().calls
        1
    """

    def __init__(
        self,
        name: str = "breaker",
        config: BreakerConfig | None = None,
        *,
        store: BreakerStore | None = None,
        clock: Callable[[], float] | None = None,
        failure_policy: FailurePolicy = default_failure_policy,
        listeners: Sequence[Callable[[BreakerEvent], None]] = (),
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self.store: BreakerStore = store if store is not None else InMemoryBreakerStore()
        self._memory = self.store if type(self.store) is InMemoryBreakerStore else None
        self.clock = clock or (time.time if self.store.shared else time.monotonic)
        self.failure_policy = failure_policy
        self._listeners = list(listeners)
        self._degraded_seen = False
        self.last_state = CircuitState.CLOSED
        """The state this process last saw (no store access; use :meth:`snapshot` to read)."""

    # -- listeners ---------------------------------------------------------------
    def add_listener(self, listener: Callable[[BreakerEvent], None]) -> None:
        """Call ``listener`` with every later event."""
        self._listeners.append(listener)

    def _emit(self, events: Sequence[BreakerEvent]) -> None:
        for event in events:
            if event.kind == "transition":
                logger.info(
                    "breaker %s: %s -> %s (%s)",
                    self.name,
                    event.from_state and event.from_state.value,
                    event.state.value,
                    event.reason,
                )
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:  # a listener must never break a call
                    logger.exception("breaker %s: listener %r failed", self.name, listener)

    def _events(self, transitions: Sequence[Transition]) -> list[BreakerEvent]:
        if transitions:
            self.last_state = transitions[-1].to_state
        elif self.store.degraded == self._degraded_seen:
            return []  # the common case: nothing happened worth telling
        events = [
            BreakerEvent("transition", self.name, t.to_state, t.at, t.from_state, t.reason)
            for t in transitions
        ]
        degraded = self.store.degraded
        if degraded != self._degraded_seen:
            self._degraded_seen = degraded
            kind: EventKind = "store_fallback" if degraded else "store_recovered"
            error = getattr(self.store, "last_error", None)
            state = transitions[-1].to_state if transitions else CircuitState.CLOSED
            events.insert(0, BreakerEvent(kind, self.name, state, self.clock(), None, repr(error)))
        return events

    # -- permits -----------------------------------------------------------------
    def _admit(self, admission: Admission, now: float) -> Permit:
        if (
            admission.admitted
            and not admission.transitions
            and self.store.degraded == self._degraded_seen
        ):  # the common case: nothing to tell anyone
            self.last_state = admission.state
            return Permit(admission, now)
        events = self._events(admission.transitions)
        self.last_state = admission.state
        if not admission.admitted:
            events.append(
                BreakerEvent(
                    "rejected", self.name, admission.state, now, reason="call not permitted"
                )
            )
        self._emit(events)
        if not admission.admitted:
            raise CircuitOpenError(self.name, admission.state.value, admission.retry_after)
        return Permit(admission, now)

    def acquire(self) -> Permit:
        """A permit to call, or :class:`CircuitOpenError` (the call must not be made)."""
        now = self.clock()
        memory = self._memory
        if memory is None:
            admission = self.store.update(self.name, self.config, lambda m: m.acquire(now))
        else:  # the same change under the in-memory store's lock, without the closure
            lock, machine = memory.slot(self.name, self.config)
            with lock:
                admission = machine.acquire(now)
            if admission.admitted and not admission.transitions:
                self.last_state = admission.state
                return Permit(admission, now)  # nothing to tell anyone
        return self._admit(admission, now)

    async def aacquire(self) -> Permit:
        """Async form of :meth:`acquire`."""
        now = self.clock()
        admission = await self.store.aupdate(self.name, self.config, lambda m: m.acquire(now))
        return self._admit(admission, now)

    def _outcome(
        self, permit: Permit, exc: BaseException | None
    ) -> Callable[[BreakerMachine], Any]:
        now = self.clock()
        duration = now - permit.started
        if exc is not None and not (isinstance(exc, Exception) and self.failure_policy(exc)):
            return lambda m: m.release(permit.admission)
        failed = exc is not None
        return lambda m: m.record(now, permit.admission, failed=failed, duration=duration)

    def _reported(self, transitions: list[Transition] | None) -> None:
        if transitions or self.store.degraded != self._degraded_seen:
            self._emit(self._events(transitions or []))

    def report(self, permit: Permit, exc: BaseException | None = None) -> None:
        """Report how a permitted call ended (``exc=None`` for success)."""
        memory = self._memory
        if memory is None or exc is not None:
            self._reported(self.store.update(self.name, self.config, self._outcome(permit, exc)))
            return
        now = self.clock()  # a success in memory: the common case, without the closure
        lock, machine = memory.slot(self.name, self.config)
        with lock:
            transitions = machine.record(
                now, permit.admission, failed=False, duration=now - permit.started
            )
        if transitions:
            self._reported(transitions)

    async def areport(self, permit: Permit, exc: BaseException | None = None) -> None:
        """Async form of :meth:`report`."""
        outcome = self._outcome(permit, exc)
        self._reported(await self.store.aupdate(self.name, self.config, outcome))

    # -- guarded calls -----------------------------------------------------------
    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``func(*args, **kwargs)`` through the breaker."""
        permit = self.acquire()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self.report(permit, exc)
            raise
        self.report(permit)
        return result

    async def acall(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await ``func(*args, **kwargs)`` through the breaker."""
        permit = await self.aacquire()
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            await self.areport(permit, exc)
            raise
        await self.areport(permit)
        return result

    def __enter__(self) -> CircuitBreaker:
        permit = self.acquire()
        _ACTIVE.set((*_ACTIVE.get(), permit))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = _ACTIVE.get()
        _ACTIVE.set(stack[:-1])
        self.report(stack[-1], exc)

    async def __aenter__(self) -> CircuitBreaker:
        permit = await self.aacquire()
        _ACTIVE.set((*_ACTIVE.get(), permit))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = _ACTIVE.get()
        _ACTIVE.set(stack[:-1])
        await self.areport(stack[-1], exc)

    # -- manual control and inspection ---------------------------------------------
    def _force(self, target: CircuitState, reason: str) -> None:
        now = self.clock()
        transitions = self.store.update(
            self.name, self.config, lambda m: m.force(target, now, reason)
        )
        self._emit(self._events(transitions))

    def force_open(self) -> None:
        """Reject every call until :meth:`reset`."""
        self._force(CircuitState.FORCED_OPEN, "forced open")

    def disable(self) -> None:
        """Admit every call and count nothing until :meth:`reset`."""
        self._force(CircuitState.DISABLED, "disabled")

    def trip(self) -> None:
        """Open the breaker now, as if the thresholds had been crossed."""
        self._force(CircuitState.OPEN, "tripped by hand")

    def reset(self) -> None:
        """Back to CLOSED with an empty window."""
        self._force(CircuitState.CLOSED, "reset")

    @property
    def state(self) -> CircuitState:
        """The current state (an OPEN breaker whose time is up still reads OPEN)."""
        return self.snapshot().state

    def snapshot(self) -> BreakerSnapshot:
        """State, window counts, rates and seconds to the next probe."""
        now = self.clock()

        def read(m: BreakerMachine) -> BreakerSnapshot:
            counts = m.counts(now)
            return BreakerSnapshot(
                name=self.name,
                state=m.state,
                calls=counts.calls,
                failures=counts.failures,
                slow_calls=counts.slow,
                failure_rate=counts.failure_rate,
                slow_call_rate=counts.slow_call_rate,
                time_to_next_probe=m.retry_after(now),
                consecutive_trips=m.trips,
                probes_admitted=m.probes_admitted,
                store=type(self.store).__name__,
                store_degraded=self.store.degraded,
            )

        snap = self.store.update(self.name, self.config, read)
        self.last_state = snap.state
        self._emit(self._events([]))
        return snap

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value})"
