"""The failover decision core: one request over an ordered list of candidates.

A :class:`FailoverPlan` decides, one attempt at a time, which candidate to call
next, and after a failure whether to retry the same candidate (after how long),
move on to the next one, skip candidates whose context window is too small, or
give up. It keeps the record of the request (:class:`FailoverRoute`) and never
calls, waits or locks anything itself.

:func:`run_plan` and :func:`arun_plan` drive a plan: they wait, take each
candidate's circuit-breaker permit, make the call, report the outcome and feed it
back to the plan. They are the only places where the sync and async paths differ,
and only in how they wait. Any component with its own ordered candidates (a
failover chain, a router's per-request ranking) drives its calls through them.

The API (stable): build ``FailoverPlan(names, breakers=..., windows=..., retry=...,
admit=..., moves_on=...)`` per request, then ``run_plan(plan, call, sleep)`` (or
``await arun_plan(plan, acall, asleep)``) returns an :class:`Answer` or raises
``plan.error()``. ``call(attempt)`` receives the :class:`Attempt` to make.
Calling the driver again on the same plan resumes after the last candidate it
answered with (streams use it to move on after a mid-stream failure, see
:meth:`FailoverPlan.failed`'s ``retry`` argument).

Example:
    >>> def call(attempt):
    ...     if attempt.name == "primary":
    ...         raise TimeoutError("primary is down")
    ...     return f"answered by {attempt.name}"
    >>> plan = FailoverPlan(["primary", "backup"], retry=RetryPolicy(max_attempts=2))
    >>> waits = []
    >>> run_plan(plan, call, waits.append).output
    'answered by backup'
    >>> [(r.candidate, r.attempt) for r in plan.route.attempts], len(waits)
    ([('primary', 1), ('primary', 2)], 1)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from oscar_langchain.circuit_breaker import CircuitBreaker, Permit
from oscar_langchain.errors import ErrorClassification, FailoverError
from oscar_langchain.failover_policy import FailoverRoute, RetryPolicy

logger = logging.getLogger("oscar_langchain.failover")

__all__ = [
    "Answer",
    "Attempt",
    "FailoverPlan",
    "aclose_stream",
    "aclose_then_settle",
    "arun_plan",
    "asettle",
    "close_stream",
    "close_then_settle",
    "run_plan",
    "settle",
]

T = TypeVar("T")

_ONCE = RetryPolicy(max_attempts=1)


class Attempt:
    """One call a driver must make (read-only by convention).

    Attributes:
        index: the candidate's position in the plan's list.
        name: the candidate's name.
        number: the attempt on this candidate (1 for the first call, 2 for a retry...).
        wait: seconds to wait before the call (0.0 for a first attempt).
        breaker: the candidate's circuit breaker (``None``: the call is not guarded).
    """

    __slots__ = ("breaker", "index", "name", "number", "wait")

    def __init__(
        self, index: int, name: str, number: int, wait: float, breaker: CircuitBreaker | None
    ) -> None:
        self.index = index
        self.name = name
        self.number = number
        self.wait = wait
        self.breaker = breaker

    def retried(self, wait: float) -> Attempt:
        """The next attempt on the same candidate, after ``wait`` seconds."""
        return Attempt(self.index, self.name, self.number + 1, wait, self.breaker)

    def __repr__(self) -> str:
        return f"Attempt({self.name!r}, number={self.number}, wait={self.wait})"


class Answer(Generic[T]):
    """A successful attempt: its output, the attempt, and the breaker permit.

    ``permit`` is already reported unless the driver was asked to ``hold`` it (a
    stream holds it until its last chunk, then calls :func:`settle`).

    Attributes:
        output: what the call returned.
        attempt: the attempt that succeeded.
        permit: its breaker permit (``None`` when unguarded).
        started: ``plan.clock()`` when the attempt began.
    """

    __slots__ = ("attempt", "output", "permit", "started")

    def __init__(self, output: T, attempt: Attempt, permit: Permit | None, started: float) -> None:
        self.output = output
        self.attempt = attempt
        self.permit = permit
        self.started = started


class FailoverPlan:
    """The decisions of one request over ordered candidates (see the module doc).

    Args:
        names: the candidates' names, in the order to try them.
        breakers: each candidate's circuit breaker (``None`` entries: unguarded).
        windows: each candidate's context window in tokens (``None``: unknown); after a
            context-length overflow only candidates with a larger window are tried.
        retry: retries per candidate (default: one attempt each).
        clock: seconds as a float, for attempt durations.
        admit: called with a candidate's index before its first attempt; a returned
            string skips the candidate with that reason (kept in :attr:`skipped`).
        moves_on: whether a failure with this classification may move on to another
            attempt (default: always); when it returns ``False`` the driver re-raises
            the candidate's error at once.

    Example:
        >>> plan = FailoverPlan(["a", "b"], admit=lambda i: "over budget" if i == 0 else None)
        >>> plan.next().name, plan.skipped
        ('b', {'a': 'over budget'})
    """

    __slots__ = (
        "_admit",
        "_index",
        "_moves_on",
        "_pending",
        "_route",
        "_windows",
        "breakers",
        "clock",
        "names",
        "retry",
        "skipped",
    )

    def __init__(
        self,
        names: Sequence[str],
        *,
        breakers: Sequence[CircuitBreaker | None] | None = None,
        windows: Sequence[int | None] | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        admit: Callable[[int], str | None] | None = None,
        moves_on: Callable[[ErrorClassification], bool] | None = None,
    ) -> None:
        self.names = names
        self.breakers: Sequence[CircuitBreaker | None] = (
            (None,) * len(names) if breakers is None else breakers
        )
        self._windows = (None,) * len(names) if windows is None else windows
        self._route: FailoverRoute | None = None  # made on first use: the happy path needs none
        self.retry = _ONCE if retry is None else retry
        self.clock = clock
        self.skipped: dict[str, str] = {}
        self._admit = admit
        self._moves_on = moves_on
        self._index = 0
        self._pending: Attempt | None = None

    @property
    def route(self) -> FailoverRoute:
        """The record of this request: the failed attempts and the candidates tried."""
        if self._route is None:
            self._route = FailoverRoute(self.names, self._windows)
        return self._route

    def next(self) -> Attempt | None:
        """The next attempt to make, or ``None`` when no candidate is left."""
        pending = self._pending
        if pending is not None:
            self._pending = None
            return pending
        names, route = self.names, self._route
        while self._index < len(names):
            index = self._index
            self._index += 1
            if route is not None and not route.eligible(index):
                continue
            if self._admit is not None:
                reason = self._admit(index)
                if reason is not None:
                    self.skipped[names[index]] = reason
                    continue
            return Attempt(index, names[index], 1, 0.0, self.breakers[index])
        return None

    def failed(
        self, attempt: Attempt, error: Exception, duration: float, *, retry: bool = True
    ) -> bool:
        """Record a failed attempt and decide what follows it.

        Args:
            attempt: the attempt that failed.
            error: what it raised (a rejected breaker permit included).
            duration: seconds the attempt took.
            retry: whether the same candidate may be retried (``False`` after a
                stream failed mid-way: the next attempt is another candidate's).

        Returns:
            ``False`` when the error must not fail over (see ``moves_on``): the caller
            re-raises it. ``True`` otherwise; :meth:`next` then gives the retry or
            the next candidate.
        """
        verdict = self.route.record(attempt.index, attempt.number, error, duration)
        if self._moves_on is not None and not self._moves_on(verdict):
            return False
        if retry:
            wait = self.retry.next_wait(attempt.number, error)
            if wait is not None:
                self._pending = attempt.retried(wait)
        return True

    def metadata(self, attempt: Attempt) -> dict[str, object]:
        """The route taken, for the answer's ``response_metadata``."""
        return self.route.metadata(attempt.index)

    def error(self, message: str = "every failover candidate failed") -> Exception:
        """The error raised when no candidate answered (subclasses may override it)."""
        if not self.route.attempts and self.skipped:
            reasons = "; ".join(f"{n}: {r}" for n, r in self.skipped.items())
            return FailoverError(f"{message} (none could be tried: {reasons})", [])
        return FailoverError(message, self.route.attempts)


def run_plan(
    plan: FailoverPlan,
    call: Callable[[Attempt], T],
    sleep: Callable[[float], None] = time.sleep,
    *,
    hold: bool = False,
) -> Answer[T]:
    """Make ``plan``'s attempts with ``call`` until one succeeds.

    Args:
        plan: the request's plan.
        call: makes one attempt; its exceptions are the attempt's failure.
        sleep: how to wait before a retry.
        hold: keep the successful attempt's breaker permit (report it with
            :func:`settle` once the work it guards is over).

    Raises:
        Exception: ``plan.error()`` when no candidate is left, or a candidate's
            own error when the plan says it must not fail over.
    """
    while (attempt := plan.next()) is not None:
        if attempt.wait:
            sleep(attempt.wait)
        breaker, permit = attempt.breaker, None
        started = plan.clock()
        try:
            if breaker is not None:
                permit = breaker.acquire()
            output = call(attempt)
        except BaseException as exc:
            if permit is not None:
                breaker.report(permit, exc)  # type: ignore[union-attr]
            if not isinstance(exc, Exception) or not plan.failed(
                attempt, exc, plan.clock() - started
            ):
                raise
            continue
        if permit is not None and not hold:
            breaker.report(permit)  # type: ignore[union-attr]
        return Answer(output, attempt, permit, started)
    raise plan.error()


async def arun_plan(
    plan: FailoverPlan,
    call: Callable[[Attempt], Awaitable[T]],
    sleep: Callable[[float], Awaitable[None]],
    *,
    hold: bool = False,
) -> Answer[T]:
    """Async form of :func:`run_plan` (same decisions; awaits instead of blocking)."""
    while (attempt := plan.next()) is not None:
        if attempt.wait:
            await sleep(attempt.wait)
        breaker, permit = attempt.breaker, None
        started = plan.clock()
        try:
            if breaker is not None:
                permit = await breaker.aacquire()
            output = await call(attempt)
        except BaseException as exc:
            if permit is not None:
                await breaker.areport(permit, exc)  # type: ignore[union-attr]
            if not isinstance(exc, Exception) or not plan.failed(
                attempt, exc, plan.clock() - started
            ):
                raise
            continue
        if permit is not None and not hold:
            await breaker.areport(permit)  # type: ignore[union-attr]
        return Answer(output, attempt, permit, started)
    raise plan.error()


def settle(answer: Answer[Any], error: BaseException | None = None) -> None:
    """Report how the work of a held answer ended (``error=None``: it succeeded)."""
    if answer.permit is not None and answer.attempt.breaker is not None:
        answer.attempt.breaker.report(answer.permit, error)


async def asettle(answer: Answer[Any], error: BaseException | None = None) -> None:
    """Async form of :func:`settle`."""
    if answer.permit is not None and answer.attempt.breaker is not None:
        await answer.attempt.breaker.areport(answer.permit, error)


def close_stream(stream: object) -> None:
    """``stream.close()`` if it has one: its ``finally`` blocks run now, not at GC."""
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _close_failed(error: BaseException, close_error: Exception) -> None:
    """A stream's close raised: re-raise, unless the stream had already failed.

    When ``error`` is the stream's own failure (an ``Exception``), that failure is the one
    the caller handles (the next candidate, or ``FailoverError``): the close error is
    logged, not allowed to replace it. When the stream was stopped (``GeneratorExit``,
    cancellation), the close error propagates.
    """
    if not isinstance(error, Exception):
        raise close_error
    logger.warning("closing a failed stream raised too (%r after %r)", close_error, error)


def close_then_settle(answer: Answer[Any], stream: object, error: BaseException) -> None:
    """Close the stream a held answer guards, then :func:`settle` the answer.

    The answer is settled even when closing raises (see :func:`_close_failed` for
    whether that error propagates).
    """
    try:
        close_stream(stream)
    except Exception as close_error:  # noqa: BLE001 - decided by _close_failed
        _close_failed(error, close_error)
    finally:
        settle(answer, error)


async def aclose_stream(stream: object) -> None:
    """``await stream.aclose()`` if it has one: its ``finally`` blocks run now, not at GC."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def aclose_then_settle(answer: Answer[Any], stream: object, error: BaseException) -> None:
    """Async form of :func:`close_then_settle`.

    The report is awaited (a shared breaker store does not block the event loop), except
    for a generator finalised with no event loop running (garbage-collected after its
    loop ended): nothing could resume an await there, so the report is the sync
    :func:`settle`.
    """
    try:
        await aclose_stream(stream)
    except Exception as close_error:  # noqa: BLE001 - decided by _close_failed
        _close_failed(error, close_error)
    finally:
        if isinstance(error, GeneratorExit) and not _loop_running():
            settle(answer, error)
        else:
            await asettle(answer, error)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
