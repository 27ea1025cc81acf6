"""Streaming through :class:`~oscar_langchain.routing.router.RouterRunnable`.

Both paths drive the same :class:`~oscar_langchain.routing.plan.RoutePlan` as
``invoke``. Until a route yields its first chunk, a failure is an ordinary failed
attempt and the stream moves on to the next ranked route, invisibly to the consumer.
After it, a failure gives the route's booking back, counts against its breaker and
is raised (the chunks already handed out cannot be taken back). The first chunk
carries the decision in ``response_metadata["oscar_route"]``; the time to it feeds
the route's time-to-first-token average. A consumer that stops early gives the
booking and the breaker permit back uncounted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig

from oscar_langchain._runnable import aannotate_run, annotate_run
from oscar_langchain.routing.decision import RouteDecision
from oscar_langchain.routing.plan import Attempt, RoutePlan

if TYPE_CHECKING:
    from oscar_langchain.routing.router import RouterRunnable

__all__ = ["astream_routed", "stream_routed", "traced", "with_route_metadata"]

_END: Any = object()


def traced(run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun) -> bool:
    """Whether anyone listens to this run (annotations are skipped otherwise)."""
    return bool(run_manager.handlers or run_manager.inheritable_handlers)


def with_route_metadata(output: Any, decision: RouteDecision) -> Any:
    """``output`` with the decision in ``response_metadata["oscar_route"]`` (messages only)."""
    if isinstance(output, BaseMessage):
        meta = {**output.response_metadata, "oscar_route": decision.to_dict()}
        return output.model_copy(update={"response_metadata": meta})
    return output


def _merge(merged: Any, chunk: Any) -> Any:
    if isinstance(merged, BaseMessage) and isinstance(chunk, BaseMessage):
        return merged + chunk  # type: ignore[operator]
    return chunk if merged is None else merged


class _Answer:
    """The route whose stream produced its first chunk: tag it, merge, settle."""

    def __init__(self, router: RouterRunnable, plan: RoutePlan, attempt: Attempt) -> None:
        self.router, self.plan, self.attempt = router, plan, attempt
        self.ttft = router.clock() - attempt.started
        self.shown = plan.shown(attempt)
        self.merged: Any = None

    def tag(self, chunk: Any) -> Any:
        """Merge ``chunk``; the first one carries the decision."""
        first = self.merged is None
        self.merged = _merge(self.merged, chunk)
        return with_route_metadata(chunk, self.shown) if first else chunk

    def done(self, run_manager: Any) -> None:
        """Settle the booking with the merged output's usage; remember the run."""
        self.plan.succeed(self.attempt, self.merged, ttft=self.ttft)
        self.router._finish(self.plan, run_manager.run_id)


def _open(
    router: RouterRunnable,
    plan: RoutePlan,
    attempt: Attempt,
    input: Any,
    child: RunnableConfig,
) -> tuple[Any, Iterator[Any], Any] | None:
    """Start ``attempt``'s stream up to its first chunk (``None``: it failed, move on)."""
    breaker, permit = router._breaker(attempt.name), None
    try:
        permit = breaker.acquire() if breaker is not None else None
        chunks = iter(attempt.candidate.route.runnable.stream(input, child))
        return permit, chunks, next(chunks, _END)
    except BaseException as exc:  # noqa: BLE001 - _not_opened re-raises what must not move on
        if permit is not None:
            breaker.report(permit, exc)
        _not_opened(plan, attempt, exc)
        return None


def _not_opened(plan: RoutePlan, attempt: Attempt, exc: BaseException) -> None:
    """A stream failed before its first chunk: record it and move on, or raise."""
    if not isinstance(exc, Exception):  # cancelled, interrupted
        plan.cancel(attempt)
        raise exc
    plan.fail(attempt, exc)


def stream_routed(
    router: RouterRunnable,
    input: Any,
    run_manager: CallbackManagerForChainRun,
    config: RunnableConfig,
) -> Iterator[Any]:
    """The sync stream of ``router`` (see the module docstring)."""
    plan = router._plan(input, config)
    for attempt in plan:
        opened = _open(router, plan, attempt, input, router._cfg(config, run_manager, attempt))
        if opened is None:
            continue
        permit, chunks, chunk = opened
        breaker = router._breaker(attempt.name)
        answer = _Answer(router, plan, attempt)
        if traced(run_manager):
            annotate_run(run_manager, answer.shown.attributes())
        try:
            while chunk is not _END:
                yield answer.tag(chunk)
                chunk = next(chunks, _END)
        except BaseException as exc:
            if breaker is not None:
                breaker.report(permit, exc)
            _ended_early(plan, attempt, exc)
            raise
        if breaker is not None:
            breaker.report(permit)
        answer.done(run_manager)
        return
    raise plan.error()


def _ended_early(plan: RoutePlan, attempt: Attempt, exc: BaseException) -> None:
    if isinstance(exc, Exception):
        plan.abort(attempt, exc)
    else:
        plan.cancel(attempt)


async def _aopen(
    router: RouterRunnable,
    plan: RoutePlan,
    attempt: Attempt,
    input: Any,
    child: RunnableConfig,
) -> tuple[Any, AsyncIterator[Any], Any] | None:
    """Async form of :func:`_open`."""
    breaker, permit = router._breaker(attempt.name), None
    try:
        permit = await breaker.aacquire() if breaker is not None else None
        chunks = attempt.candidate.route.runnable.astream(input, child).__aiter__()
        return permit, chunks, await anext(chunks, _END)
    except BaseException as exc:  # noqa: BLE001 - _not_opened re-raises what must not move on
        if permit is not None:
            await breaker.areport(permit, exc)
        _not_opened(plan, attempt, exc)
        return None


async def astream_routed(
    router: RouterRunnable,
    input: Any,
    run_manager: AsyncCallbackManagerForChainRun,
    config: RunnableConfig,
) -> AsyncIterator[Any]:
    """The async stream of ``router`` (see the module docstring)."""
    plan = router._plan(input, config)
    for attempt in plan:
        child = router._cfg(config, run_manager, attempt)
        opened = await _aopen(router, plan, attempt, input, child)
        if opened is None:
            continue
        permit, chunks, chunk = opened
        breaker = router._breaker(attempt.name)
        answer = _Answer(router, plan, attempt)
        if traced(run_manager):
            await aannotate_run(run_manager, answer.shown.attributes())
        try:
            while chunk is not _END:
                yield answer.tag(chunk)
                chunk = await anext(chunks, _END)
        except GeneratorExit as exc:  # aclose(): report without awaiting
            if breaker is not None:
                breaker.report(permit, exc)
            plan.cancel(attempt)
            raise
        except (Exception, asyncio.CancelledError) as exc:
            if breaker is not None:
                await breaker.areport(permit, exc)
            _ended_early(plan, attempt, exc)
            raise
        if breaker is not None:
            await breaker.areport(permit)
        answer.done(run_manager)
        return
    raise plan.error()
