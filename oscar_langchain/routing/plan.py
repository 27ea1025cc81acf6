"""One request's way down the ranked routes, as a pure state machine.

The router's sync, async and streaming paths all drive a :class:`RoutePlan`; they
differ only in how they call a route and wait. The plan books each route in the
limit store before its call (skipping routes with no room), records each outcome
(latency, usage, the failure's classification), settles the booking with the real
usage, and decides whether a failure moves on to the next ranked route. Nothing here
imports LangChain.

Example:
    >>> from oscar_langchain.routing.engine import RoutingEngine
    >>> from oscar_langchain.routing.route import Route
    >>> from oscar_langchain.routing.selectors import Cheapest
    >>> engine = RoutingEngine([Route(name="a", runnable=None, input_price=1.0),
    ...                         Route(name="b", runnable=None, input_price=2.0)],
    ...                        selector=Cheapest())
    >>> plan = RoutePlan.start(engine, engine.request(input_tokens=10, output_tokens=5))
    >>> for attempt in plan:
    ...     if attempt.name == "a":
    ...         plan.fail(attempt, TimeoutError("a is down"))
    ...     else:
    ...         plan.succeed(attempt, "answer")
    >>> plan.final.chosen, plan.final.attempts
    ('b', (('a', 'timeout'), ('b', 'ok')))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from oscar_langchain.errors import AttemptRecord, FailoverError, RouterError, classify_error
from oscar_langchain.routing.candidate import Candidate, Request
from oscar_langchain.routing.decision import RouteDecision
from oscar_langchain.routing.engine import RoutingEngine
from oscar_langchain.routing.limits import Reservation
from oscar_langchain.routing.selectors import Ranking

__all__ = ["Attempt", "RoutePlan", "moves_on"]


def moves_on(exc: BaseException) -> bool:
    """Whether a failure is worth trying on the next ranked route.

    Time-outs, 5xx, rate limits, connection errors, context overflows and open
    circuits move on; bad requests, auth errors and bugs are re-raised.
    """
    verdict = classify_error(exc)
    return (
        verdict.retryable
        or verdict.counts_as_failure
        or verdict.is_context_length
        or verdict.kind.value == "circuit_open"
    )


@dataclass(slots=True)
class Attempt:
    """One booked call of one route."""

    candidate: Candidate
    booking: Reservation
    index: int
    started: float

    @property
    def name(self) -> str:
        """The route's name."""
        return self.candidate.route.name


class RoutePlan:
    """Book, call, record and settle the ranked routes of one request (see module doc).

    Iterating gives the next booked :class:`Attempt` until one succeeded or the
    ranking is exhausted; each attempt must be ended with :meth:`succeed` or
    :meth:`fail` (or :meth:`abort` once output was already handed out, or
    :meth:`cancel` when the caller gave up).

    Args:
        engine: the routing core (its limit store books calls).
        request: the request's facts.
        decision: the engine's decision for ``request``.
        ranking: the routes to try, in order.
        failover: whether a failure worth retrying elsewhere moves on.
        clock: seconds, for latencies.
    """

    __slots__ = (
        "_clock",
        "_failover",
        "_limits",
        "_pending",
        "decision",
        "final",
        "outcomes",
        "output",
        "records",
        "request",
        "skipped",
    )

    def __init__(
        self,
        engine: RoutingEngine,
        request: Request,
        decision: RouteDecision,
        ranking: Ranking,
        *,
        failover: bool = True,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._limits = engine.limits
        self._clock = clock
        self._failover = failover
        self._pending = enumerate(ranking)
        self.request = request
        self.decision = decision
        self.records: list[AttemptRecord] = []
        self.outcomes: list[tuple[str, str]] = []
        self.skipped: dict[str, str] = {}
        self.final: RouteDecision | None = None
        self.output: Any = None

    @classmethod
    def start(
        cls,
        engine: RoutingEngine,
        request: Request,
        *,
        failover: bool = True,
        max_attempts: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> RoutePlan:
        """Decide ``request`` and plan its calls; :class:`RouterError` if no route passes."""
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
        return cls(engine, request, decision, ranking, failover=failover, clock=clock)

    def __iter__(self) -> Iterator[Attempt]:
        return self

    def __next__(self) -> Attempt:
        if self.final is not None:
            raise StopIteration
        request = self.request
        for index, (cand, _score) in self._pending:
            booking = self._limits.try_acquire(
                cand.route,
                tokens=request.input_tokens + request.output_tokens,
                cost=cand.estimated_cost(request),
            )
            if isinstance(booking, str):
                self.skipped[cand.name] = booking
                continue
            return Attempt(cand, booking, index, self._clock())
        raise StopIteration

    def shown(self, attempt: Attempt) -> RouteDecision:
        """The decision as it stands once ``attempt`` answers (for a stream's first chunk)."""
        return self.decision.served_by(attempt.name, (*self.outcomes, (attempt.name, "ok")))

    def succeed(self, attempt: Attempt, output: Any, *, ttft: float | None = None) -> None:
        """Settle ``attempt`` with ``output``'s real usage and end the plan."""
        usage = getattr(output, "usage_metadata", None)
        cand = attempt.candidate
        if usage:
            tokens_in, tokens_out = int(usage["input_tokens"]), int(usage["output_tokens"])
            cost = (tokens_in * cand.input_price + tokens_out * cand.output_price) / 1e6
            self._limits.release(attempt.booking, tokens=tokens_in + tokens_out, cost=cost)
        else:
            self._limits.release(attempt.booking)
        cand.stats.observe(
            self._clock() - attempt.started,
            output_tokens=int(usage["output_tokens"]) if usage else None,
            ttft=ttft,
        )
        self.final = self.shown(attempt)
        self.outcomes.append((attempt.name, "ok"))
        self.output = output

    def abort(self, attempt: Attempt, exc: BaseException) -> AttemptRecord:
        """Record a failed ``attempt`` and give its booking back (nothing was spent)."""
        self._limits.release(attempt.booking, cost=0.0)
        attempt.candidate.stats.observe_failure()
        verdict = classify_error(exc)
        record = AttemptRecord(
            attempt.name, attempt.index, exc, verdict, self._clock() - attempt.started
        )
        self.records.append(record)
        self.outcomes.append((attempt.name, verdict.kind.value))
        return record

    def cancel(self, attempt: Attempt) -> None:
        """Give ``attempt``'s booking back uncounted (the caller stopped or was cancelled)."""
        self._limits.release(attempt.booking, cost=0.0)

    def fail(self, attempt: Attempt, exc: BaseException) -> None:
        """Record a failed ``attempt``; re-raise ``exc`` unless it moves on to the next route."""
        self.abort(attempt, exc)
        if not (self._failover and moves_on(exc)):
            raise exc

    def attributes(self) -> dict[str, Any]:
        """The run's tracer attributes (``oscar.route`` empty when no route answered)."""
        return (self.final or replace(self.decision, chosen=None)).attributes()

    def error(self) -> Exception:
        """Why no route answered: every call failed, or none had room."""
        if self.records:
            return FailoverError(
                f"every ranked route failed ({len(self.records)} calls)", self.records
            )
        rejections = {**dict(self.decision.rejected), **self.skipped}
        return RouterError(
            "no route had room for this request: "
            + "; ".join(f"{n}: {r}" for n, r in rejections.items()),
            rejections,
        )
