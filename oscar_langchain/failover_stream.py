"""Streaming through :class:`~oscar_langchain.failover.FailoverRunnable`.

Until a candidate yields its first chunk, a failure is an ordinary failed attempt
(retried, then failed over, invisibly to the consumer): opening a stream and
reading its first chunk is the attempt :func:`~oscar_langchain.failover_plan.run_plan`
makes. After it, the runnable's ``stream_policy`` decides (raise, or continue on the
next candidate with the partial answer as context): the same plan is driven again
and resumes with the next candidate. The candidate's breaker permit is held from
the request until the stream ends; a consumer that stops early gives the permit
back uncounted. A candidate's stream left before its end (the consumer stopped, a
chunk failed or timed out) is closed at once, so its ``finally`` blocks and its run's
end callback run then, not at garbage collection; the permit is settled after it,
even when closing raises.

``attempt_timeout`` bounds the wait for each chunk, sync and async alike: a sync
stream under a timeout is read by a worker thread (:class:`TimedChunks`), so a hung
backend cannot block the consumer past the timeout.

Call-time keyword arguments (``stream(x, stop=[...])``) go to every candidate's
stream, a continuation's included.

When the chunks are message chunks, one last empty ``AIMessageChunk`` carries the
route in ``response_metadata``, so the merged message has it like ``invoke``'s.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.messages import AIMessageChunk, BaseMessageChunk
from langchain_core.runnables import RunnableConfig

from oscar_langchain._runnable import aannotate_run, annotate_run
from oscar_langchain.failover_plan import (
    Answer,
    Attempt,
    FailoverPlan,
    aclose_stream,
    aclose_then_settle,
    arun_plan,
    asettle,
    close_stream,
    close_then_settle,
    run_plan,
    settle,
)

if TYPE_CHECKING:
    from oscar_langchain.failover import FailoverRunnable

__all__ = ["TimedChunks", "astream_with_failover", "stream_with_failover"]

_END: Any = object()


class TimedChunks:
    """A sync iterator read by a worker thread, each chunk awaited at most ``timeout`` s.

    On a time-out, :meth:`next` raises ``on_timeout()`` and the worker stops after its
    current chunk (a call blocked in the backend cannot be interrupted from Python;
    the daemon thread is left to finish it and its output is dropped).

    Args:
        open_stream: returns the iterator; called in the worker, in a copy of the
            caller's context (so callbacks nest as usual).
        timeout: seconds to wait for each chunk.
        on_timeout: builds the error raised on a time-out.

    Example:
        >>> chunks = TimedChunks(lambda: iter([1, 2]), 5.0, TimeoutError)
        >>> chunks.next(), chunks.next(), chunks.next() is _END
        (1, 2, True)
    """

    def __init__(
        self,
        open_stream: Callable[[], Iterator[Any]],
        timeout: float,
        on_timeout: Callable[[], Exception],
    ) -> None:
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._queue: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        context = contextvars.copy_context()
        worker = threading.Thread(
            target=context.run, args=(self._pump, open_stream), daemon=True, name="oscar-stream"
        )
        worker.start()

    def _pump(self, open_stream: Callable[[], Iterator[Any]]) -> None:
        iterator: Iterator[Any] | None = None
        try:
            iterator = iter(open_stream())
            for chunk in iterator:
                if self._stop.is_set():
                    break
                self._queue.put((True, chunk))
            else:
                self._queue.put((True, _END))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer's thread
            self._queue.put((False, exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def next(self) -> Any:
        """The next chunk, ``_END`` after the last; raises the stream's error or a time-out."""
        try:
            ok, value = self._queue.get(timeout=self._timeout)
        except queue.Empty:
            self._stop.set()
            raise self._on_timeout() from None
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """Stop the worker after its current chunk."""
        self._stop.set()


def _merge(partial: Any, chunk: Any) -> Any:
    if partial is None:
        return chunk
    try:
        return partial + chunk
    except TypeError:
        return chunk


class _StreamRun:
    """The decisions of one streamed request, shared by the sync and async loops."""

    def __init__(self, runnable: FailoverRunnable, input: Any, kwargs: dict[str, Any]) -> None:
        self.runnable = runnable
        self.plan: FailoverPlan = runnable._plan()
        self.input = input
        self.kwargs = kwargs  # call-time arguments (stop=...), sent to every candidate
        self.current = input  # what the next candidate is sent (a continuation after a cut)
        self.partial: Any = None

    def seen(self, chunk: Any) -> Any:
        self.partial = _merge(self.partial, chunk)
        return chunk

    def broke(self, answer: Answer[Any], error: Exception) -> None:
        """A failure after the first chunk: record it, then move on or raise per policy."""
        plan = self.plan
        plan.failed(answer.attempt, error, plan.clock() - answer.started, retry=False)
        self.current = self.runnable._after_first_chunk(plan, error, self.input, self.partial)

    def finished(self, answer: Answer[Any], run_manager: Any) -> tuple[dict[str, Any] | None, Any]:
        """The run's attributes and the last chunk to yield (``_END``: none)."""
        _, attributes = self.runnable._finish(
            Answer(None, answer.attempt, None, answer.started), self.plan, run_manager
        )
        if isinstance(self.partial, BaseMessageChunk):
            meta = self.plan.metadata(answer.attempt)
            return attributes, AIMessageChunk(content="", response_metadata=meta)
        return attributes, _END


def _open(
    run: _StreamRun,
    run_manager: CallbackManagerForChainRun,
    config: RunnableConfig,
    attempt: Attempt,
) -> tuple[Any, Callable[[], Any], object]:
    """Open the candidate's stream and read its first chunk (the attempt proper).

    Returns the first chunk, how to read the next, and what to close when done.
    """
    runnable = run.runnable
    candidate = runnable.candidates[attempt.index]
    child = runnable._config(config, run_manager, attempt)
    current, kwargs = run.current, run.kwargs
    stream: object
    if runnable.attempt_timeout is None:
        iterator = iter(candidate.stream(current, child, **kwargs))
        step: Callable[[], Any] = lambda: next(iterator, _END)  # noqa: E731
        stream = iterator
    else:
        timed = TimedChunks(
            lambda: candidate.stream(current, child, **kwargs),
            runnable.attempt_timeout,
            lambda: runnable._timeout_error(attempt),
        )
        step, stream = timed.next, timed
    try:
        return step(), step, stream
    except BaseException:
        close_stream(stream)
        raise


def stream_with_failover(
    runnable: FailoverRunnable,
    input: Any,
    run_manager: CallbackManagerForChainRun,
    config: RunnableConfig,
    kwargs: dict[str, Any],
) -> Iterator[Any]:
    """The sync stream of ``runnable`` (see the module docstring)."""
    run = _StreamRun(runnable, input, kwargs)
    while True:
        answer = run_plan(
            run.plan, lambda a: _open(run, run_manager, config, a), runnable.sleep, hold=True
        )
        chunk, step, stream = answer.output
        try:
            while chunk is not _END:
                yield run.seen(chunk)
                chunk = step()
        except Exception as exc:  # noqa: BLE001 - a mid-stream failure, handled per policy
            close_then_settle(answer, stream, exc)
            run.broke(answer, exc)
            continue
        except BaseException as exc:  # consumer stopped early, or interrupted
            close_then_settle(answer, stream, exc)
            raise
        settle(answer)
        attributes, last = run.finished(answer, run_manager)
        if attributes is not None:
            annotate_run(run_manager, attributes)
        if last is not _END:
            yield last
        return


async def _aopen(
    run: _StreamRun,
    run_manager: AsyncCallbackManagerForChainRun,
    config: RunnableConfig,
    attempt: Attempt,
) -> tuple[Any, AsyncIterator[Any]]:
    runnable = run.runnable
    child = runnable._config(config, run_manager, attempt)
    candidate = runnable.candidates[attempt.index]
    iterator = candidate.astream(run.current, child, **run.kwargs).__aiter__()
    try:
        return await runnable._within(anext(iterator, _END), attempt), iterator
    except BaseException:  # failed, timed out or cancelled before the first chunk
        await aclose_stream(iterator)
        raise


async def astream_with_failover(
    runnable: FailoverRunnable,
    input: Any,
    run_manager: AsyncCallbackManagerForChainRun,
    config: RunnableConfig,
    kwargs: dict[str, Any],
) -> AsyncIterator[Any]:
    """The async stream of ``runnable``; ``attempt_timeout`` bounds each chunk's wait."""
    run = _StreamRun(runnable, input, kwargs)
    while True:
        answer = await arun_plan(
            run.plan, lambda a: _aopen(run, run_manager, config, a), runnable.asleep, hold=True
        )
        chunk, iterator = answer.output
        try:
            while chunk is not _END:
                yield run.seen(chunk)
                chunk = await runnable._within(anext(iterator, _END), answer.attempt)
        except Exception as exc:  # noqa: BLE001 - a mid-stream failure, handled per policy
            await aclose_then_settle(answer, iterator, exc)
            run.broke(answer, exc)
            continue
        except BaseException as exc:  # aclose(), cancelled or interrupted
            await aclose_then_settle(answer, iterator, exc)
            raise
        await asettle(answer)
        attributes, last = run.finished(answer, run_manager)
        if attributes is not None:
            await aannotate_run(run_manager, attributes)
        if last is not _END:
            yield last
        return
