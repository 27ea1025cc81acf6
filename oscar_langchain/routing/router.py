"""``RouterRunnable``: pick a model per input, call it, fail over down the ranking.

For each input the router counts the prompt's tokens, scores its complexity,
filters the routes with its policies (context window, capabilities, tags, breaker,
limits) and ranks the rest with its selector (:mod:`~oscar_langchain.routing.engine`).
It then calls the first route; with ``failover=True`` a failure worth retrying
elsewhere (time-out, 5xx, rate limit, connection, context overflow, open circuit)
moves to the next ranked route. Each call is booked in the limit store first
(atomically, so limits hold under concurrency) and settled with real usage.

The :class:`RouteDecision` is attached to the run (``oscar.route``... for the tracer)
and to the output message's ``response_metadata["oscar_route"]``.

Per-call options go in ``config["configurable"]``: ``max_output_tokens``,
``route_tags`` and ``route_capabilities``.

Example:
    >>> from langchain_core.language_models import FakeListChatModel
    >>> router = RouterRunnable(routes=[
    ...     Route(name="small", runnable=FakeListChatModel(responses=["small says hi"]),
    ...           context_window=64, input_price=0.1, quality=0.4),
    ...     Route(name="large", runnable=FakeListChatModel(responses=["large says hi"]),
    ...           context_window=100_000, input_price=3.0, quality=0.9),
    ... ], selector=Cheapest(), token_counter=lambda messages: 10 * len(str(messages)),
    ...    default_output_tokens=16)
    >>> router.invoke("hi").content
    'large says hi'
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, Field, PrivateAttr

from oscar_langchain._runnable import OscarRunnable, aannotate_run, annotate_run, child_config
from oscar_langchain.errors import (
    AttemptRecord,
    FailoverError,
    RouterError,
    classify_error,
)
from oscar_langchain.routing.candidate import Candidate, Request
from oscar_langchain.routing.complexity import HeuristicComplexity
from oscar_langchain.routing.decision import RouteDecision
from oscar_langchain.routing.engine import RoutingEngine
from oscar_langchain.routing.limits import Reservation
from oscar_langchain.routing.policies import DEFAULT_POLICIES
from oscar_langchain.routing.route import Route
from oscar_langchain.routing.selectors import Cheapest, QualityFloor, Ranking
from oscar_langchain.routing.status import format_status

__all__ = ["RouterRunnable"]

_ = Cheapest  # re-exported for the doctest namespace


def _messages(input: Any) -> list[BaseMessage] | None:
    if isinstance(input, PromptValue):
        return input.to_messages()
    if isinstance(input, str):
        return [HumanMessage(input)]
    if isinstance(input, BaseMessage):
        return [input]
    if isinstance(input, Sequence):
        try:
            return convert_to_messages(input)
        except (ValueError, TypeError, NotImplementedError):
            return None
    return None


def _text_of(messages: list[BaseMessage] | None, input: Any) -> str:
    if messages is None:
        return str(input)
    for message in reversed(messages):
        if message.type == "human":
            return message.text if isinstance(message.text, str) else str(message.content)
    return messages[-1].text if messages else ""


def _has_image(messages: list[BaseMessage] | None) -> bool:
    for m in messages or ():
        if isinstance(m.content, list):
            for part in m.content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "image"):
                    return True
    return False


class RouterRunnable(OscarRunnable[Any, Any]):
    """Routes each input to one of N routes: filter, rank, call, fail over.

    See the module docstring for the pipeline and per-call options.
    """

    routes: list[Route]
    """The routes (unique names)."""
    selector: Any = Field(default_factory=QualityFloor)
    """Ranks the routes that pass the filters (default: cheapest meeting a quality floor)."""
    policies: tuple[Any, ...] = DEFAULT_POLICIES
    """Filter policies, or plain ``f(candidate, request) -> reason | None`` callables."""
    complexity: Any = Field(default_factory=HeuristicComplexity)
    """``f(text) -> [0, 1]`` complexity scorer (``None``: always 0)."""
    registry: Any = None
    """Model registry for context windows and prices (default: the package's)."""
    limits: Any = None
    """Limit store (default: in memory)."""
    breaker_config: Any = None
    """``BreakerConfig`` of the routes' circuit breakers (default: the failover module's)."""
    breaker_store: Any = None
    """``BreakerStore`` holding breaker state (memory by default; Redis to share it)."""
    breakers: dict[str, Any] | None = None
    """``CircuitBreaker`` per route name; default: one per route built from
    ``breaker_config``/``breaker_store`` (``{}``: no breakers). Open ones are filtered
    out; every call acquires a permit and reports its outcome."""
    token_counter: Any = None
    """``f(messages) -> int`` prompt token counter (default: ``TokenCounter().count_messages``)."""
    default_output_tokens: int = Field(default=512, gt=0)
    """Output tokens assumed when the call does not set ``max_output_tokens``."""
    failover: bool = True
    """Try the next ranked route when a call fails with a retryable error."""
    max_attempts: int | None = Field(default=None, gt=0)
    """Most routes tried per request (``None``: all ranked)."""
    clock: Callable[[], float] = time.perf_counter
    """Seconds, for latency measurements."""
    feedback_capacity: int = Field(default=10_000, gt=0)
    """How many recent runs ``feedback(run_id, ...)`` can still refer to."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    _engine: RoutingEngine = PrivateAttr()
    _count: Callable[[Any], int] = PrivateAttr()
    _runs: OrderedDict[UUID, tuple[str, float]] = PrivateAttr(default_factory=OrderedDict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _open: set[str] = PrivateAttr(default_factory=set)

    def model_post_init(self, context: Any, /) -> None:
        """Resolve routes, build the routing core and the routes' circuit breakers once."""
        if self.breakers is None:
            from oscar_langchain.circuit_breaker import CircuitBreaker

            self.breakers = {
                r.name: CircuitBreaker(r.name, self.breaker_config, store=self.breaker_store)
                for r in self.routes
            }
        for name, breaker in self.breakers.items():
            breaker.add_listener(self._breaker_event(name))
        registry = self.registry
        if registry is None:
            from oscar_langchain.models import default_registry

            registry = default_registry()
        self._engine = RoutingEngine(
            self.routes,
            selector=self.selector,
            policies=self.policies,
            registry=registry,
            limits=self.limits,
        )
        if self.token_counter is None:
            from oscar_langchain.tokens import TokenCounter

            counter = TokenCounter()

            def count(messages: Any) -> int:
                if isinstance(messages, str):
                    return counter.count(messages)
                return counter.count_messages(messages)

            self._count = count
        else:
            self._count = self.token_counter

    @property
    def engine(self) -> RoutingEngine:
        """The pure routing core (candidates, limits, selector)."""
        return self._engine

    def _all_breakers(self) -> dict[str, Any]:
        return self.breakers or {}

    def _breaker(self, name: str) -> Any:
        return self.breakers.get(name) if self.breakers else None

    # -- deciding ------------------------------------------------------------------
    def _breaker_event(self, name: str) -> Callable[[Any], None]:
        def on_event(event: Any) -> None:
            if event.kind == "transition":
                if getattr(event.state, "value", event.state) == "open":
                    self._open.add(name)
                else:
                    self._open.discard(name)

        return on_event

    def _open_breakers(self) -> list[str]:
        # Only breakers seen opening are read, so deciding stays O(routes) and cheap;
        # an open breaker whose probe time has come is offered again (half-open probe).
        out = []
        for name in list(self._open):
            snap = self._all_breakers()[name].snapshot()
            state = getattr(snap.state, "value", snap.state)
            if state == "open" and (snap.time_to_next_probe or 0) > 0:
                out.append(name)
        return out

    def _breaker_states(self) -> dict[str, str]:
        return {n: str(getattr(b.state, "value", b.state)) for n, b in self._all_breakers().items()}

    def build_request(self, input: Any, config: RunnableConfig | None = None) -> Request:
        """The facts the router decides on for ``input`` (tokens, complexity...)."""
        options = (config or {}).get("configurable") or {}
        messages = _messages(input)
        text = _text_of(messages, input)
        tokens = int(self._count(messages if messages is not None else text))
        caps = set(options.get("route_capabilities") or ())
        if _has_image(messages):
            caps.add("vision")
        return self._engine.request(
            input_tokens=tokens,
            output_tokens=int(options.get("max_output_tokens") or self.default_output_tokens),
            capabilities=caps,
            tags=options.get("route_tags") or (),
            complexity=float(self.complexity(text)) if self.complexity is not None else 0.0,
            text=text,
            open_breakers=self._open_breakers() if self._open else (),
        )

    def decide(self, input: Any, config: RunnableConfig | None = None) -> RouteDecision:
        """The decision for ``input`` without calling any route."""
        return self._engine.decide(self.build_request(input, config))[0]

    def _plan(self, input: Any, config: RunnableConfig) -> tuple[Request, RouteDecision, Ranking]:
        request = self.build_request(input, config)
        decision, ranking = self._engine.decide(request)
        if not ranking:
            raise RouterError(
                "no route can serve this request: "
                + "; ".join(f"{n}: {r}" for n, r in decision.rejected),
                dict(decision.rejected),
            )
        limit = self.max_attempts if self.failover else 1
        return request, decision, ranking[:limit] if limit else ranking

    # -- calling (shared by sync, async and stream) ------------------------------------
    def _book(self, cand: Candidate, request: Request) -> Reservation | str:
        return self._engine.limits.try_acquire(
            cand.route,
            tokens=request.input_tokens + request.output_tokens,
            cost=cand.estimated_cost(request),
        )

    def _settle(self, cand: Candidate, booking: Reservation, output: Any) -> None:
        usage = getattr(output, "usage_metadata", None)
        if usage:
            tokens_in, tokens_out = int(usage["input_tokens"]), int(usage["output_tokens"])
            cost = (tokens_in * cand.input_price + tokens_out * cand.output_price) / 1e6
            self._engine.limits.release(booking, tokens=tokens_in + tokens_out, cost=cost)
        else:
            self._engine.limits.release(booking)

    def _failed(
        self, cand: Candidate, booking: Reservation, exc: Exception, attempt: int, started: float
    ) -> AttemptRecord:
        self._engine.limits.release(booking, cost=0.0)
        cand.stats.observe_failure()
        verdict = classify_error(exc)
        record = AttemptRecord(cand.name, attempt, exc, verdict, self.clock() - started)
        moves_on = (
            verdict.retryable or verdict.counts_as_failure or verdict.is_context_length
        ) or verdict.kind.value == "circuit_open"
        if not (self.failover and moves_on):
            raise exc
        return record

    def _succeeded(
        self,
        cand: Candidate,
        booking: Reservation,
        output: Any,
        started: float,
        *,
        decision: RouteDecision,
        attempts: list[tuple[str, str]],
        run_id: UUID,
        ttft: float | None = None,
    ) -> tuple[Any, RouteDecision]:
        self._settle(cand, booking, output)
        usage = getattr(output, "usage_metadata", None)
        cand.stats.observe(
            self.clock() - started,
            output_tokens=int(usage["output_tokens"]) if usage else None,
            ttft=ttft,
        )
        attempts.append((cand.name, "ok"))
        final = replace(decision, chosen=cand.name, attempts=tuple(attempts))
        with self._lock:
            self._runs[run_id] = (cand.name, decision.complexity)
            while len(self._runs) > self.feedback_capacity:
                self._runs.popitem(last=False)
        return self._with_metadata(output, final), final

    @staticmethod
    def _with_metadata(output: Any, decision: RouteDecision) -> Any:
        if isinstance(output, BaseMessage):
            meta = {**output.response_metadata, "oscar_route": decision.to_dict()}
            return output.model_copy(update={"response_metadata": meta})
        return output

    def _exhausted(
        self, decision: RouteDecision, records: list[AttemptRecord], skipped: dict[str, str]
    ) -> Exception:
        if records:
            return FailoverError(f"every ranked route failed ({len(records)} calls)", records)
        rejections = {**dict(decision.rejected), **skipped}
        return RouterError(
            "no route had room for this request: "
            + "; ".join(f"{n}: {r}" for n, r in rejections.items()),
            rejections,
        )

    def _cfg(
        self, config: RunnableConfig, run_manager: Any, cand: Candidate, attempt: int
    ) -> RunnableConfig:
        return child_config(
            config,
            run_manager,
            tag=f"route:{cand.name}",
            metadata={"oscar.route": cand.name, "oscar.route.attempt": attempt},
        )

    def _invoke(
        self, input: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Any:
        request, decision, ranking = self._plan(input, config)
        records: list[AttemptRecord] = []
        attempts: list[tuple[str, str]] = []
        skipped: dict[str, str] = {}
        for attempt, (cand, _score) in enumerate(ranking):
            booking = self._book(cand, request)
            if isinstance(booking, str):
                skipped[cand.name] = booking
                continue
            breaker = self._breaker(cand.name)
            started = self.clock()
            try:
                permit = breaker.acquire() if breaker is not None else None
                try:
                    output = cand.route.runnable.invoke(
                        input, self._cfg(config, run_manager, cand, attempt)
                    )
                except Exception as exc:
                    if breaker is not None:
                        breaker.report(permit, exc)
                    raise
                if breaker is not None:
                    breaker.report(permit)
            except Exception as exc:  # noqa: BLE001 - classified; non-retryable re-raised
                records.append(self._failed(cand, booking, exc, attempt, started))
                attempts.append((cand.name, records[-1].classification.kind.value))
                continue
            result, final = self._succeeded(
                cand,
                booking,
                output,
                started,
                decision=decision,
                attempts=attempts,
                run_id=run_manager.run_id,
            )
            annotate_run(run_manager, final.attributes())
            return result
        annotate_run(run_manager, replace(decision, chosen=None).attributes())
        raise self._exhausted(decision, records, skipped)

    async def _ainvoke(
        self, input: Any, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> Any:
        request, decision, ranking = self._plan(input, config)
        records: list[AttemptRecord] = []
        attempts: list[tuple[str, str]] = []
        skipped: dict[str, str] = {}
        for attempt, (cand, _score) in enumerate(ranking):
            booking = self._book(cand, request)
            if isinstance(booking, str):
                skipped[cand.name] = booking
                continue
            breaker = self._breaker(cand.name)
            started = self.clock()
            try:
                permit = await breaker.aacquire() if breaker is not None else None
                try:
                    output = await cand.route.runnable.ainvoke(
                        input, self._cfg(config, run_manager, cand, attempt)
                    )
                except Exception as exc:
                    if breaker is not None:
                        await breaker.areport(permit, exc)
                    raise
                if breaker is not None:
                    await breaker.areport(permit)
            except Exception as exc:  # noqa: BLE001 - classified; non-retryable re-raised
                records.append(self._failed(cand, booking, exc, attempt, started))
                attempts.append((cand.name, records[-1].classification.kind.value))
                continue
            result, final = self._succeeded(
                cand,
                booking,
                output,
                started,
                decision=decision,
                attempts=attempts,
                run_id=run_manager.run_id,
            )
            await aannotate_run(run_manager, final.attributes())
            return result
        await aannotate_run(run_manager, replace(decision, chosen=None).attributes())
        raise self._exhausted(decision, records, skipped)

    def _stream(
        self, input: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Iterator[Any]:
        request, decision, ranking = self._plan(input, config)
        records: list[AttemptRecord] = []
        attempts: list[tuple[str, str]] = []
        skipped: dict[str, str] = {}
        for attempt, (cand, _score) in enumerate(ranking):
            booking = self._book(cand, request)
            if isinstance(booking, str):
                skipped[cand.name] = booking
                continue
            started = self.clock()
            chunks = cand.route.runnable.stream(
                input, self._cfg(config, run_manager, cand, attempt)
            )
            try:
                first = next(iter(chunks))
            except StopIteration:
                first = None
            except Exception as exc:  # noqa: BLE001 - nothing streamed yet: fail over
                records.append(self._failed(cand, booking, exc, attempt, started))
                attempts.append((cand.name, records[-1].classification.kind.value))
                continue
            ttft = self.clock() - started
            shown = replace(decision, chosen=cand.name, attempts=(*attempts, (cand.name, "ok")))
            annotate_run(run_manager, shown.attributes())
            merged = first
            if first is not None:
                yield self._with_metadata(first, shown)
            for chunk in chunks:
                if isinstance(merged, BaseMessage) and isinstance(chunk, BaseMessage):
                    merged = merged + chunk  # type: ignore[operator]
                yield chunk
            self._succeeded(
                cand,
                booking,
                merged,
                started,
                decision=decision,
                attempts=attempts,
                run_id=run_manager.run_id,
                ttft=ttft,
            )
            return
        raise self._exhausted(decision, records, skipped)

    # -- feedback and status ----------------------------------------------------------
    def feedback(self, run_id: UUID | str, score: float) -> bool:
        """Tell the selector how good run ``run_id``'s answer was (score in [0, 1]).

        Returns ``False`` when the run is unknown (too old) or the selector does not learn.
        """
        key = UUID(str(run_id))
        with self._lock:
            entry = self._runs.get(key)
        update = getattr(self._engine.selector, "update", None)
        if entry is None or update is None:
            return False
        update(entry[0], entry[1], score)
        return True

    def status(self) -> list[dict[str, Any]]:
        """Every route's breaker, limits, budget left, latency and in-flight as plain data."""
        return self._engine.status(self._breaker_states())

    def status_table(self) -> str:
        """:meth:`status` as a readable table."""
        return format_status(self.status())
