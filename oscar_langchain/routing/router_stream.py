"""Streaming through :class:`~oscar_langchain.routing.router.RouterRunnable`, and its calls.

:class:`RouteCalls` is how one request calls a route (invoke, ainvoke, or a stream up
to its first chunk); ``invoke`` and the streams below hand its methods to the failover
core's drivers.

Both paths drive the same :class:`~oscar_langchain.routing.plan.RoutePlan` as
``invoke``, through the failover core's drivers with the breaker permit held until
the stream ends. Until a route yields its first chunk, a failure is an ordinary
failed attempt (retried, or failed over to the next ranked route), invisibly to the
consumer.
After it, a failure gives the route's booking back, counts against its breaker and
is raised (the chunks already handed out cannot be taken back). The first chunk
carries the decision in ``response_metadata["oscar_route"]``; the time to it feeds
the route's time-to-first-token average. A consumer that stops early gives the
booking and the breaker permit back uncounted. Either way the route's stream is
closed at once (not at garbage collection), then the permit and the booking are
settled, even when closing raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig

from oscar_langchain._runnable import aannotate_run, annotate_run
from oscar_langchain.failover_plan import (
    Answer,
    Attempt,
    aclose_then_settle,
    arun_plan,
    asettle,
    close_then_settle,
    run_plan,
    settle,
)
from oscar_langchain.routing.decision import RouteDecision
from oscar_langchain.routing.plan import RoutePlan

if TYPE_CHECKING:
    from oscar_langchain.routing.router import RouterRunnable

__all__ = ["END", "RouteCalls", "astream_routed", "stream_routed", "traced", "with_route_metadata"]

END: Any = object()
"""What :meth:`RouteCalls.stream` gives as the first chunk of an empty stream."""


def traced(run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun) -> bool:
    """Whether anyone listens to this run (annotations are skipped otherwise)."""
    return bool(run_manager.handlers or run_manager.inheritable_handlers)


def with_route_metadata(output: Any, decision: RouteDecision) -> Any:
    """``output`` with the decision in ``response_metadata["oscar_route"]`` (messages only)."""
    if isinstance(output, BaseMessage):
        meta = {**output.response_metadata, "oscar_route": decision.to_dict()}
        return output.model_copy(update={"response_metadata": meta})
    return output


class RouteCalls:
    """How one request calls the route of an attempt: invoke, or stream to a first chunk.

    The failover core's drivers call these with each :class:`Attempt`; a call's
    exception is the attempt's failure.
    """

    __slots__ = ("config", "input", "kwargs", "plan", "router", "run_manager")

    def __init__(
        self,
        router: RouterRunnable,
        plan: RoutePlan,
        input: Any,
        run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        kwargs: dict[str, Any],
    ) -> None:
        self.router, self.plan, self.input = router, plan, input
        self.run_manager, self.config = run_manager, config
        self.kwargs = kwargs  # call-time arguments (stop=...), sent to every route

    def _target(self, attempt: Attempt) -> tuple[Runnable[Any, Any], RunnableConfig]:
        runnable = self.plan.candidates[attempt.index].route.runnable
        return runnable, self.router._cfg(self.config, self.run_manager, attempt)

    def invoke(self, attempt: Attempt) -> Any:
        """The route's answer."""
        runnable, child = self._target(attempt)
        return runnable.invoke(self.input, child, **self.kwargs)

    async def ainvoke(self, attempt: Attempt) -> Any:
        """The route's answer, awaited."""
        runnable, child = self._target(attempt)
        return await runnable.ainvoke(self.input, child, **self.kwargs)

    def stream(self, attempt: Attempt) -> tuple[Iterator[Any], Any]:
        """The route's stream and its first chunk (:data:`END` if it is empty)."""
        runnable, child = self._target(attempt)
        chunks = iter(runnable.stream(self.input, child, **self.kwargs))
        return chunks, next(chunks, END)

    async def astream(self, attempt: Attempt) -> tuple[AsyncIterator[Any], Any]:
        """Async form of :meth:`stream`."""
        runnable, child = self._target(attempt)
        chunks = runnable.astream(self.input, child, **self.kwargs).__aiter__()
        return chunks, await anext(chunks, END)


def _merge(merged: Any, chunk: Any) -> Any:
    if isinstance(merged, BaseMessage) and isinstance(chunk, BaseMessage):
        return merged + chunk  # type: ignore[operator]
    return chunk if merged is None else merged


class _Streamed:
    """The route whose stream produced its first chunk: tag it, merge, settle."""

    def __init__(self, router: RouterRunnable, plan: RoutePlan, answer: Answer[Any]) -> None:
        self.router, self.plan, self.answer = router, plan, answer
        self.ttft = plan.clock() - answer.started
        self.shown = plan.shown(answer.attempt)
        self.merged: Any = None

    def tag(self, chunk: Any) -> Any:
        """Merge ``chunk``; the first one carries the decision."""
        first = self.merged is None
        self.merged = _merge(self.merged, chunk)
        return with_route_metadata(chunk, self.shown) if first else chunk

    def done(self, run_manager: Any) -> None:
        """Settle the booking with the merged output's usage; remember the run."""
        self.plan.succeed(self.answer, self.merged, ttft=self.ttft)
        self.router._finish(self.plan, run_manager.run_id)


def stream_routed(
    router: RouterRunnable,
    input: Any,
    run_manager: CallbackManagerForChainRun,
    config: RunnableConfig,
    kwargs: dict[str, Any],
) -> Iterator[Any]:
    """The sync stream of ``router`` (see the module docstring)."""
    plan = router._plan(input, config)
    with closing(plan):
        calls = RouteCalls(router, plan, input, run_manager, config, kwargs=kwargs)
        try:
            answer = run_plan(plan, calls.stream, router.sleep, hold=True)
        except BaseException:
            if traced(run_manager):
                annotate_run(run_manager, plan.attributes())
            raise
        chunks, chunk = answer.output
        streamed = _Streamed(router, plan, answer)
        if traced(run_manager):
            annotate_run(run_manager, streamed.shown.attributes())
        try:
            while chunk is not END:
                yield streamed.tag(chunk)
                chunk = next(chunks, END)
        except BaseException as exc:  # failed mid-stream, or the consumer stopped
            try:
                close_then_settle(answer, chunks, exc)
            finally:
                if isinstance(exc, Exception):
                    plan.abort(answer, exc)
            raise
        settle(answer)
        streamed.done(run_manager)


async def astream_routed(
    router: RouterRunnable,
    input: Any,
    run_manager: AsyncCallbackManagerForChainRun,
    config: RunnableConfig,
    kwargs: dict[str, Any],
) -> AsyncIterator[Any]:
    """The async stream of ``router`` (see the module docstring)."""
    plan = router._plan(input, config)
    with closing(plan):
        calls = RouteCalls(router, plan, input, run_manager, config, kwargs=kwargs)
        try:
            answer = await arun_plan(plan, calls.astream, router.asleep, hold=True)
        except BaseException:
            if traced(run_manager):
                await aannotate_run(run_manager, plan.attributes())
            raise
        chunks, chunk = answer.output
        streamed = _Streamed(router, plan, answer)
        if traced(run_manager):
            await aannotate_run(run_manager, streamed.shown.attributes())
        try:
            while chunk is not END:
                yield streamed.tag(chunk)
                chunk = await anext(chunks, END)
        except BaseException as exc:  # failed mid-stream, aclose(), or cancelled
            try:
                await aclose_then_settle(answer, chunks, exc)
            finally:
                if isinstance(exc, Exception):
                    plan.abort(answer, exc)
            raise
        await asettle(answer)
        streamed.done(run_manager)
