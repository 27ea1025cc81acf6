"""Streaming through :class:`~oscar_langchain.failover.FailoverRunnable`.

Until a candidate yields its first chunk, a failure is an ordinary failed attempt
(retried, then failed over, invisibly to the consumer). After it, the runnable's
``stream_policy`` decides (raise, or continue on the next candidate with the partial
answer as context). The candidate's breaker permit is held from the request until
the stream ends; a consumer that stops early gives the permit back uncounted.

When the chunks are message chunks, one last empty ``AIMessageChunk`` carries the
route in ``response_metadata``, so the merged message has it like ``invoke``'s.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.messages import AIMessageChunk, BaseMessageChunk
from langchain_core.runnables import RunnableConfig

from oscar_langchain._runnable import aannotate_run, annotate_run
from oscar_langchain.circuit_breaker import Permit

if TYPE_CHECKING:
    from oscar_langchain.failover import FailoverRunnable
    from oscar_langchain.failover_policy import FailoverRoute

__all__ = ["astream_with_failover", "stream_with_failover"]

_END: Any = object()


def _merge(partial: Any, chunk: Any) -> Any:
    if partial is None:
        return chunk
    try:
        return partial + chunk
    except TypeError:
        return chunk


def _route_chunk(partial: Any, meta: dict[str, Any]) -> Any:
    if isinstance(partial, BaseMessageChunk):
        return AIMessageChunk(content="", response_metadata=meta)
    return _END


class _Opened:
    """A candidate's stream that produced its first chunk (or ended without one)."""

    def __init__(self, index: int, attempt: int, permit: Permit, start: float, first: Any) -> None:
        self.index, self.attempt, self.permit, self.start, self.first = (
            index,
            attempt,
            permit,
            start,
            first,
        )


def _open(
    runnable: FailoverRunnable,
    index: int,
    attempt: int,
    *,
    input: Any,
    run_manager: CallbackManagerForChainRun,
    config: RunnableConfig,
    route: FailoverRoute,
) -> tuple[_Opened, Iterator[Any]]:
    breaker = runnable._breakers[index]
    start = breaker.clock()
    try:
        permit = breaker.acquire()
    except Exception as exc:
        route.record(index, attempt, exc, 0.0)
        raise
    child = runnable._config(config, run_manager, index, attempt)
    iterator = iter(runnable.candidates[index].stream(input, child))
    try:
        first = next(iterator, _END)
    except BaseException as exc:
        breaker.report(permit, exc)
        if isinstance(exc, Exception):
            route.record(index, attempt, exc, breaker.clock() - start)
        raise
    return _Opened(index, attempt, permit, start, first), iterator


def stream_with_failover(
    runnable: FailoverRunnable,
    input: Any,
    run_manager: CallbackManagerForChainRun,
    config: RunnableConfig,
) -> Iterator[Any]:
    """The sync stream of ``runnable`` (see the module docstring)."""
    route = runnable._route()
    current, partial = input, None
    for index in range(len(runnable.candidates)):
        if not route.eligible(index):
            continue
        try:
            opened, iterator = runnable.retry.run(
                functools.partial(
                    _open,
                    runnable,
                    index,
                    input=current,
                    run_manager=run_manager,
                    config=config,
                    route=route,
                ),
                runnable.sleep,
            )
        except Exception:  # noqa: BLE001 - recorded in route; try the next candidate
            continue
        breaker = runnable._breakers[index]
        chunk = opened.first
        try:
            while chunk is not _END:
                partial = _merge(partial, chunk)
                yield chunk
                chunk = next(iterator, _END)
        except Exception as exc:  # noqa: BLE001 - a mid-stream failure, handled per policy
            breaker.report(opened.permit, exc)
            route.record(index, opened.attempt, exc, breaker.clock() - opened.start)
            current = runnable._after_first_chunk(route, exc, input, partial)
            continue
        except BaseException as exc:  # consumer stopped early, or cancelled
            breaker.report(opened.permit, exc)
            raise
        breaker.report(opened.permit)
        _, attributes = runnable._finish(None, route, index)
        annotate_run(run_manager, attributes)
        last = _route_chunk(partial, route.metadata(index))
        if last is not _END:
            yield last
        return
    raise route.error()


async def _aopen(
    runnable: FailoverRunnable,
    index: int,
    attempt: int,
    *,
    input: Any,
    run_manager: AsyncCallbackManagerForChainRun,
    config: RunnableConfig,
    route: FailoverRoute,
) -> tuple[_Opened, AsyncIterator[Any]]:
    breaker = runnable._breakers[index]
    start = breaker.clock()
    try:
        permit = await breaker.aacquire()
    except Exception as exc:
        route.record(index, attempt, exc, 0.0)
        raise
    child = runnable._config(config, run_manager, index, attempt)
    iterator = runnable.candidates[index].astream(input, child).__aiter__()
    try:
        first = await _anext(runnable, iterator, index)
    except BaseException as exc:
        await breaker.areport(permit, exc)
        if isinstance(exc, Exception):
            route.record(index, attempt, exc, breaker.clock() - start)
        raise
    return _Opened(index, attempt, permit, start, first), iterator


async def _anext(runnable: FailoverRunnable, iterator: AsyncIterator[Any], index: int) -> Any:
    step = anext(iterator, _END)
    if runnable.attempt_timeout is None:
        return await step
    return await runnable._await_within(step, index)


async def astream_with_failover(
    runnable: FailoverRunnable,
    input: Any,
    run_manager: AsyncCallbackManagerForChainRun,
    config: RunnableConfig,
) -> AsyncIterator[Any]:
    """The async stream of ``runnable``; ``attempt_timeout`` bounds each chunk's wait."""
    route = runnable._route()
    current, partial = input, None
    for index in range(len(runnable.candidates)):
        if not route.eligible(index):
            continue
        try:
            opened, aiterator = await runnable.retry.arun(
                functools.partial(
                    _aopen,
                    runnable,
                    index,
                    input=current,
                    run_manager=run_manager,
                    config=config,
                    route=route,
                ),
                runnable.asleep,
            )
        except Exception:  # noqa: BLE001 - recorded in route; try the next candidate
            continue
        breaker = runnable._breakers[index]
        chunk = opened.first
        try:
            while chunk is not _END:
                partial = _merge(partial, chunk)
                yield chunk
                chunk = await _anext(runnable, aiterator, index)
        except Exception as exc:  # noqa: BLE001 - a mid-stream failure, handled per policy
            await breaker.areport(opened.permit, exc)
            route.record(index, opened.attempt, exc, breaker.clock() - opened.start)
            current = runnable._after_first_chunk(route, exc, input, partial)
            continue
        except GeneratorExit as exc:  # aclose(): report without awaiting
            breaker.report(opened.permit, exc)
            raise
        except asyncio.CancelledError as exc:
            await breaker.areport(opened.permit, exc)
            raise
        await breaker.areport(opened.permit)
        _, attributes = runnable._finish(None, route, index)
        await aannotate_run(run_manager, attributes)
        last = _route_chunk(partial, route.metadata(index))
        if last is not _END:
            yield last
        return
    raise route.error()
