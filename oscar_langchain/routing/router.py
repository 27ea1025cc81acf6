"""``RouterRunnable``: pick a model per input, call it, fail over down the ranking.

For each input the router counts the prompt's tokens, scores its complexity,
filters the routes with its policies (context window, capabilities, tags, breaker,
limits) and ranks the rest with its selector (:mod:`~oscar_langchain.routing.engine`).
The ranking is the failover order: the router calls it through the failover core
(:mod:`~oscar_langchain.failover_plan`, as ``FailoverRunnable`` does), so each
route's circuit breaker guards its calls, a retryable failure (time-out, 5xx, rate
limit, connection) is retried on the same route per ``retry`` (backoff, jitter,
``Retry-After``), then it moves on to the next ranked route; a context overflow moves
on at once to a route with a larger window; bad requests and auth errors are
raised; when every route failed, :class:`~oscar_langchain.errors.FailoverError`
carries every attempt. Each route is booked in the limit store before its first
call (atomically, so limits hold under concurrency) and settled with real usage.

The :class:`RouteDecision` is attached to the run (``oscar.route``... for the tracer)
and to the output message's ``response_metadata["oscar_route"]``.

Per-call options go in ``config["configurable"]``: ``max_output_tokens``,
``route_tags`` and ``route_capabilities``. Call-time keyword arguments
(``invoke(x, stop=[...])``, ``.bind(stop=[...])``) do not change the decision; they
are passed to every route called, on every path.

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

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, ClassVar
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, Field, PrivateAttr

from oscar_langchain._runnable import (
    OscarRunnable,
    aannotate_run,
    aclosing_stream,
    annotate_run,
    child_config,
)
from oscar_langchain.failover_plan import Attempt, arun_plan, run_plan
from oscar_langchain.failover_policy import RetryPolicy
from oscar_langchain.routing.candidate import Request
from oscar_langchain.routing.complexity import HeuristicComplexity
from oscar_langchain.routing.decision import RouteDecision
from oscar_langchain.routing.engine import RoutingEngine
from oscar_langchain.routing.plan import RoutePlan
from oscar_langchain.routing.policies import DEFAULT_POLICIES
from oscar_langchain.routing.route import Route
from oscar_langchain.routing.router_stream import (
    RouteCalls,
    astream_routed,
    stream_routed,
    traced,
    with_route_metadata,
)
from oscar_langchain.routing.selectors import Cheapest, QualityFloor
from oscar_langchain.routing.status import format_status

__all__ = ["RouterRunnable"]

_ = Cheapest  # re-exported for the doctest namespace


_REJECTING = ("open", "forced_open")


def _state(state: Any) -> str:
    """A breaker state's string value (``CircuitState`` or plain string)."""
    return str(getattr(state, "value", state))


def _breaker_event(opened: set[str], name: str) -> Callable[[Any], None]:
    """A breaker listener keeping ``opened`` = the routes whose breaker rejects calls."""

    def on_event(event: Any) -> None:
        if event.kind == "transition":
            if _state(event.state) in _REJECTING:
                opened.add(name)
            else:
                opened.discard(name)

    return on_event


@dataclass(slots=True)
class _Live:
    """The router's live state, in one plain object.

    Read on every call: each pydantic private attribute would cost a slow lookup.
    """

    engine: RoutingEngine
    count: Callable[[Any], int]
    open: set[str]
    runs: OrderedDict[UUID, tuple[str, float]] | None  # None: the selector cannot learn
    learn: Callable[[str, float, float], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


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
            if isinstance(message.content, str):  # the common case: no content blocks
                return message.content
            text = message.text  # a property that joins the text blocks
            return text if isinstance(text, str) else str(message.content)
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
    """Fail over through the failover core: retry a route per ``retry``, then move on to
    the next ranked route. ``False``: one call to the first route; its error is raised."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    """Retries of one route (backoff, jitter, ``Retry-After``) before the next route."""
    sleep: Callable[[float], None] = time.sleep
    """How sync retries wait."""
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """How async retries wait."""
    max_attempts: int | None = Field(default=None, gt=0)
    """Most routes tried per request (``None``: all ranked)."""
    clock: Callable[[], float] = time.perf_counter
    """Seconds, for latency measurements."""
    feedback_capacity: int = Field(default=10_000, gt=0)
    """How many recent runs ``feedback(run_id, ...)`` can still refer to."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    # every route call gets a child_config (RouteCalls), so the shell can skip its own
    _explicit_child_configs: ClassVar[bool] = True
    _live: _Live = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        """Resolve routes, build the routing core and the routes' circuit breakers once."""
        opened: set[str] = set()
        if self.breakers is None:
            from oscar_langchain.circuit_breaker import CircuitBreaker

            self.breakers = {
                r.name: CircuitBreaker(r.name, self.breaker_config, store=self.breaker_store)
                for r in self.routes
            }
        for name, breaker in self.breakers.items():
            breaker.add_listener(_breaker_event(opened, name))
            if _state(breaker.state) in _REJECTING:  # opened before we listened
                opened.add(name)
        registry = self.registry
        if registry is None:
            from oscar_langchain.models import default_registry

            registry = default_registry()
        engine = RoutingEngine(
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

        else:
            count = self.token_counter
        learn = getattr(engine.selector, "update", None)
        self._live = _Live(engine, count, opened, OrderedDict() if learn else None, learn)

    @property
    def engine(self) -> RoutingEngine:
        """The pure routing core (candidates, limits, selector)."""
        return self._live.engine

    def _all_breakers(self) -> dict[str, Any]:
        return self.breakers or {}

    def _breaker(self, name: str) -> Any:
        return self.breakers.get(name) if self.breakers else None

    # -- deciding ------------------------------------------------------------------
    def _open_breakers(self, opened: set[str]) -> list[str]:
        # Only breakers seen opening are read, so deciding stays O(routes) and cheap;
        # an open breaker whose probe time has come is offered again (half-open probe).
        out = []
        for name in list(opened):
            snap = self._all_breakers()[name].snapshot()
            state = _state(snap.state)
            if state == "forced_open" or (state == "open" and (snap.time_to_next_probe or 0) > 0):
                out.append(name)
        return out

    def _breaker_states(self) -> dict[str, str]:
        return {n: _state(b.state) for n, b in self._all_breakers().items()}

    def build_request(self, input: Any, config: RunnableConfig | None = None) -> Request:
        """The facts the router decides on for ``input`` (tokens, complexity...)."""
        live = self._live
        options = (config or {}).get("configurable") or {}
        messages = _messages(input)
        text = _text_of(messages, input)
        tokens = int(live.count(messages if messages is not None else text))
        caps = set(options.get("route_capabilities") or ())
        if _has_image(messages):
            caps.add("vision")
        return live.engine.request(
            input_tokens=tokens,
            output_tokens=int(options.get("max_output_tokens") or self.default_output_tokens),
            capabilities=caps,
            tags=options.get("route_tags") or (),
            complexity=float(self.complexity(text)) if self.complexity is not None else 0.0,
            text=text,
            open_breakers=self._open_breakers(live.open) if live.open else (),
        )

    def decide(self, input: Any, config: RunnableConfig | None = None) -> RouteDecision:
        """The decision for ``input`` without calling any route."""
        return self._live.engine.decide(self.build_request(input, config))[0]

    def _plan(self, input: Any, config: RunnableConfig) -> RoutePlan:
        return RoutePlan.start(
            self._live.engine,
            self.build_request(input, config),
            breakers=self._breaker,
            retry=self.retry,
            failover=self.failover,
            max_attempts=self.max_attempts,
            clock=self.clock,
        )

    # -- calling: sync, async and stream drive one RoutePlan (the failover core) --------
    def _cfg(self, config: RunnableConfig, run_manager: Any, attempt: Attempt) -> RunnableConfig:
        return child_config(
            config,
            run_manager,
            tag=f"route:{attempt.name}",
            metadata={"oscar.route": attempt.name, "oscar.route.attempt": attempt.number},
        )

    def _finish(self, plan: RoutePlan, run_id: UUID) -> Any:
        """The answer with its decision in ``response_metadata``; remember the run."""
        assert plan.final is not None, "the plan has an answer"
        runs = self._live.runs
        if runs is not None:  # only a learning selector can use feedback
            with self._live.lock:
                runs[run_id] = (plan.final.chosen or "", plan.decision.complexity)
                while len(runs) > self.feedback_capacity:
                    runs.popitem(last=False)
        return with_route_metadata(plan.output, plan.final)

    def _invoke(
        self,
        input: Any,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Any:
        plan = self._plan(input, config)
        try:
            with closing(plan):
                calls = RouteCalls(self, plan, input, run_manager, config, kwargs=kwargs)
                plan.succeed(run_plan(plan, calls.invoke, self.sleep))
        finally:
            if traced(run_manager):
                annotate_run(run_manager, plan.attributes())
        return self._finish(plan, run_manager.run_id)

    async def _ainvoke(
        self,
        input: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Any:
        plan = self._plan(input, config)
        try:
            with closing(plan):
                calls = RouteCalls(self, plan, input, run_manager, config, kwargs=kwargs)
                plan.succeed(await arun_plan(plan, calls.ainvoke, self.asleep))
        finally:
            if traced(run_manager):
                await aannotate_run(run_manager, plan.attributes())
        return self._finish(plan, run_manager.run_id)

    def _stream(
        self,
        input: Any,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Iterator[Any]:
        yield from stream_routed(self, input, run_manager, config, kwargs)

    async def _astream(
        self,
        input: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        stream = astream_routed(self, input, run_manager, config, kwargs)
        async with aclosing_stream(stream) as chunks:
            async for chunk in chunks:
                yield chunk

    # -- feedback and status ----------------------------------------------------------
    def feedback(self, run_id: UUID | str, score: float) -> bool:
        """Tell the selector how good run ``run_id``'s answer was (score in [0, 1]).

        Returns ``False`` when the run is unknown (too old) or the selector does not learn.
        """
        live = self._live
        if live.runs is None or live.learn is None:
            return False
        with live.lock:
            entry = live.runs.get(UUID(str(run_id)))
        if entry is None:
            return False
        live.learn(entry[0], entry[1], score)
        return True

    def status(self) -> list[dict[str, Any]]:
        """Every route's breaker, limits, budget left, latency and in-flight as plain data."""
        return self._live.engine.status(self._breaker_states())

    def status_table(self) -> str:
        """:meth:`status` as a readable table."""
        return format_status(self.status())
