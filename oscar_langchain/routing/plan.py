"""One request's way down the ranked routes: the failover core plus the router's books.

:class:`RoutePlan` is a :class:`~oscar_langchain.failover_plan.FailoverPlan` over the
request's ranked routes, so the router fails over through the failover machinery:
the same circuit breakers, retries of one route with backoff and ``Retry-After``
(tenacity's strategies), the skip of routes whose window a context overflow proved
too small, and a :class:`FailoverError` holding every attempt. On top of it the plan
keeps the router's books: each route is booked in the limit store before its first
call (a route with no room is skipped with the reason), the booking is held across
retries and settled with the real usage, and every outcome feeds the route's live
stats. The sync, async and streaming paths drive it with
:func:`~oscar_langchain.failover_plan.run_plan` / ``arun_plan``; nothing here calls,
waits or imports LangChain.

Example:
    >>> from contextlib import closing
    >>> from oscar_langchain.failover_plan import run_plan
    >>> from oscar_langchain.routing.engine import RoutingEngine
    >>> from oscar_langchain.routing.route import Route
    >>> from oscar_langchain.routing.selectors import Cheapest
    >>> engine = RoutingEngine([Route(name="a", runnable=None, input_price=1.0),
    ...                         Route(name="b", runnable=None, input_price=2.0)],
    ...                        selector=Cheapest())
    >>> plan = RoutePlan.start(engine, engine.request(input_tokens=10, output_tokens=5))
    >>> def call(attempt):
    ...     if attempt.name == "a":
    ...         raise TimeoutError("a is down")
    ...     return "answer"
    >>> with closing(plan):  # gives back a booking still held, however it ends
    ...     plan.succeed(run_plan(plan, call))
    >>> plan.final.chosen, plan.final.attempts
    ('b', (('a', 'timeout'), ('b', 'ok')))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from oscar_langchain.circuit_breaker import CircuitBreaker
from oscar_langchain.errors import ErrorClassification, ErrorKind, FailoverError, RouterError
from oscar_langchain.failover_plan import Answer, Attempt, FailoverPlan
from oscar_langchain.failover_policy import RetryPolicy
from oscar_langchain.routing.candidate import Candidate, Request
from oscar_langchain.routing.decision import RouteDecision
from oscar_langchain.routing.engine import RoutingEngine
from oscar_langchain.routing.limits import Reservation
from oscar_langchain.routing.selectors import Ranking

__all__ = ["RoutePlan", "moves_on"]


_ANSWER: Any = object()  # succeed()'s default: the answer's own output


def moves_on(verdict: ErrorClassification) -> bool:
    """Whether a failure is worth another attempt (this route again, or the next one).

    Time-outs, 5xx, rate limits, connection errors, context overflows and open
    circuits move on; bad requests, auth errors and bugs are re-raised.
    """
    return (
        verdict.retryable
        or verdict.counts_as_failure
        or verdict.is_context_length
        or verdict.kind is ErrorKind.CIRCUIT_OPEN
    )


def _never(verdict: ErrorClassification) -> bool:
    return False


class RoutePlan(FailoverPlan):
    """The failover plan of one routed request, with limit bookings and route stats.

    Drive it with ``run_plan``/``arun_plan``, then end it with :meth:`succeed` on the
    answer (or :meth:`abort` when a stream fails after its first chunk), and always
    :meth:`close` it (``with contextlib.closing(plan)``): that gives back a booking
    still held when the request failed or was cancelled.

    Args:
        engine: the routing core (its limit store books calls).
        request: the request's facts.
        decision: the engine's decision for ``request``.
        ranking: the routes to try, in order.
        breakers: each ranked route's circuit breaker (``None``: unguarded).
        retry: retries of one route before moving on (default: none).
        failover: whether a failure may lead to another attempt at all.
        clock: seconds, for latencies.
    """

    __slots__ = ("_held", "_limits", "candidates", "decision", "final", "output", "request")

    def __init__(
        self,
        engine: RoutingEngine,
        request: Request,
        decision: RouteDecision,
        ranking: Ranking,
        *,
        breakers: Sequence[CircuitBreaker | None] | None = None,
        retry: RetryPolicy | None = None,
        failover: bool = True,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.candidates: list[Candidate] = [cand for cand, _score in ranking]
        super().__init__(
            [cand.name for cand in self.candidates],
            breakers=breakers,
            windows=[cand.context_window for cand in self.candidates],
            retry=retry,
            clock=clock,
            admit=self._book,
            moves_on=moves_on if failover else _never,
        )
        self._limits = engine.limits
        self._held: tuple[int, Reservation] | None = None
        self.request = request
        self.decision = decision
        self.final: RouteDecision | None = None
        self.output: Any = None

    @classmethod
    def start(
        cls,
        engine: RoutingEngine,
        request: Request,
        *,
        breakers: Callable[[str], CircuitBreaker | None] | None = None,
        retry: RetryPolicy | None = None,
        failover: bool = True,
        max_attempts: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> RoutePlan:
        """Decide ``request`` and plan its calls; :class:`RouterError` if no route passes.

        ``breakers(name)`` gives a route's breaker; ``max_attempts`` caps the routes
        tried (``failover=False``: only the first).
        """
        decision, ranking = engine.decide(request)
        if not ranking:
            raise RouterError(
                "no route can serve this request: "
                + "; ".join(f"{n}: {r}" for n, r in decision.rejected),
                dict(decision.rejected),
            )
        limit = max_attempts if failover else 1
        if limit:
            ranking = ranking[:limit]
        guards = None if breakers is None else [breakers(cand.name) for cand, _ in ranking]
        return cls(
            engine,
            request,
            decision,
            ranking,
            breakers=guards,
            retry=retry,
            failover=failover,
            clock=clock,
        )

    # -- the router's books ---------------------------------------------------------
    def _book(self, index: int) -> str | None:
        """Book route ``index`` before its first call (``admit``); a reason skips it."""
        self.close()  # the previous route is done with
        cand, request = self.candidates[index], self.request
        booking = self._limits.try_acquire(
            cand.route,
            tokens=request.input_tokens + request.output_tokens,
            cost=cand.estimated_cost(request),
        )
        if isinstance(booking, str):
            return booking
        self._held = (index, booking)
        return None

    def close(self) -> None:
        """Give back a booking still held, uncounted (the call failed or was cancelled)."""
        held, self._held = self._held, None
        if held is not None:
            self._limits.release(held[1], cost=0.0)

    def next(self) -> Attempt | None:
        """The next attempt (a retry, or the next route with room), or ``None``."""
        attempt = super().next()
        if attempt is None:
            self.close()
        return attempt

    def failed(
        self, attempt: Attempt, error: Exception, duration: float, *, retry: bool = True
    ) -> bool:
        """Count the failure in the route's stats, then decide as the failover core does."""
        self.candidates[attempt.index].stats.observe_failure()
        return super().failed(attempt, error, duration, retry=retry)

    def outcomes(self) -> tuple[tuple[str, str], ...]:
        """``(route, error kind)`` of every failed attempt so far, in order."""
        if self._route is None:  # nothing failed: the core has made no record yet
            return ()
        return tuple((r.candidate, r.classification.kind.value) for r in self._route.attempts)

    def shown(self, attempt: Attempt) -> RouteDecision:
        """The decision as it stands once ``attempt`` answers (for a stream's first chunk)."""
        return self.decision.served_by(attempt.name, (*self.outcomes(), (attempt.name, "ok")))

    def succeed(
        self, answer: Answer[Any], output: Any = _ANSWER, *, ttft: float | None = None
    ) -> None:
        """Settle the answer's booking with its real usage; the plan is then final.

        ``output`` replaces ``answer.output`` (a stream's merged chunks, ``None`` if empty).
        """
        attempt = answer.attempt
        output = answer.output if output is _ANSWER else output
        cand = self.candidates[attempt.index]
        usage = getattr(output, "usage_metadata", None)
        held, self._held = self._held, None
        if held is not None:
            if usage:
                tokens_in, tokens_out = int(usage["input_tokens"]), int(usage["output_tokens"])
                cost = (tokens_in * cand.input_price + tokens_out * cand.output_price) / 1e6
                self._limits.release(held[1], tokens=tokens_in + tokens_out, cost=cost)
            else:
                self._limits.release(held[1])
        cand.stats.observe(
            self.clock() - answer.started,
            output_tokens=int(usage["output_tokens"]) if usage else None,
            ttft=ttft,
        )
        self.final = self.shown(attempt)
        self.output = output

    def abort(self, answer: Answer[Any], error: Exception) -> None:
        """A stream failed after its first chunk: record it; the booking goes back."""
        duration = self.clock() - answer.started
        self.route.record(answer.attempt.index, answer.attempt.number, error, duration)
        self.candidates[answer.attempt.index].stats.observe_failure()
        self.close()

    # -- outcome --------------------------------------------------------------------
    def attributes(self) -> dict[str, Any]:
        """The run's tracer attributes (``oscar.route`` empty when no route answered)."""
        if self.final is not None:
            return self.final.attributes()
        return replace(self.decision, chosen=None, attempts=self.outcomes()).attributes()

    def error(self, message: str = "every ranked route failed") -> Exception:
        """Why no route answered: every call failed, or none had room."""
        attempts = self.route.attempts
        if attempts:
            return FailoverError(f"{message} ({len(attempts)} calls)", attempts)
        rejections = {**dict(self.decision.rejected), **self.skipped}
        return RouterError(
            "no route had room for this request: "
            + "; ".join(f"{n}: {r}" for n, r in rejections.items()),
            rejections,
        )
