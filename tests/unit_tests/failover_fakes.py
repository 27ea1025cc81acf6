"""Fake chat models and errors for failover tests (no network, no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any, Literal
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator


class APIError(Exception):
    """Looks like an openai.APIStatusError to the classifier."""

    def __init__(self, status_code: int, message: str = "error", retry_after: float | None = None):
        super().__init__(message)
        self.status_code = status_code
        headers = {} if retry_after is None else {"retry-after": str(retry_after)}
        self.response = SimpleNamespace(status_code=status_code, headers=headers)


def context_overflow() -> APIError:
    return APIError(400, "This model's maximum context length is 8192 tokens")


class FlakyChat(BaseChatModel):
    """Answers ``reply``; each call first pops ``errors`` (None = succeed).

    ``cut_after``: when streaming, raise ``cut_error`` after this many chunks.
    """

    reply: str = "ok"
    errors: list[BaseException | None] = []
    fail_on: list[str] = []
    cut_after: int | None = None
    calls: int = 0
    seen: list[list[BaseMessage]] = []
    model_name: str = "flaky"

    @property
    def _llm_type(self) -> str:
        return "flaky-fake"

    def _before(self, messages: list[BaseMessage]) -> None:
        self.calls += 1
        self.seen.append(list(messages))
        if any(f in str(m.content) for m in messages for f in self.fail_on):
            raise APIError(500, "fails on this input")
        if self.errors:
            error = self.errors.pop(0)
            if error is not None:
                raise error

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self._before(messages)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.reply))])

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return self._generate(messages)

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        self._before(messages)
        for i, word in enumerate(self.reply.split(" ")):
            if self.cut_after is not None and i >= self.cut_after:
                raise APIError(502, "stream cut")
            text = word if i == 0 else " " + word
            yield ChatGenerationChunk(message=AIMessageChunk(content=text))

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages):
            yield chunk


class RunRecorder(BaseCallbackHandler):
    """Records run ids, parents, tags and metadata, and oscar annotations."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.custom: list[tuple[str, Any]] = []

    def on_chain_start(
        self,
        serialized: Any,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: Any = None,
        metadata: Any = None,
        **kw: Any,
    ) -> None:
        self.runs.append(
            {
                "kind": "chain",
                "id": run_id,
                "parent": parent_run_id,
                "tags": tags or [],
                "metadata": metadata or {},
                "name": kw.get("name"),
            }
        )

    def on_chat_model_start(
        self,
        serialized: Any,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: Any = None,
        metadata: Any = None,
        **kw: Any,
    ) -> None:
        self.runs.append(
            {
                "kind": "chat",
                "id": run_id,
                "parent": parent_run_id,
                "tags": tags or [],
                "metadata": metadata or {},
            }
        )

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kw: Any) -> None:
        self.custom.append((name, data))


class TrackedStream:
    """A candidate stream that logs ``"open"`` when it starts and ``"closed"`` in its ``finally``.

    Args:
        chunks: what it yields.
        then: after the chunks: ``"end"``, ``"cut"`` (raise ``APIError(502)``), or
            ``"hang"`` (async: wait forever).
        close_error: raised when the stream is closed before its end.
    """

    def __init__(
        self,
        *chunks: Any,
        then: Literal["end", "cut", "hang"] = "end",
        close_error: Exception | None = None,
    ) -> None:
        self.chunks, self.then, self.close_error = chunks, then, close_error
        self.log: list[str] = []

    def sync(self, inputs: Iterator[Any]) -> Iterator[Any]:
        for _ in inputs:
            pass
        self.log.append("open")
        try:
            yield from self.chunks
            if self.then == "cut":
                raise APIError(502, "stream cut")
        except GeneratorExit:
            if self.close_error is not None:
                raise self.close_error from None
            raise
        finally:
            self.log.append("closed")

    async def asynchronous(self, inputs: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for _ in inputs:
            pass
        self.log.append("open")
        try:
            for chunk in self.chunks:
                yield chunk
            if self.then == "cut":
                raise APIError(502, "stream cut")
            if self.then == "hang":
                await asyncio.Event().wait()
        except GeneratorExit:
            if self.close_error is not None:
                raise self.close_error from None
            raise
        finally:
            self.log.append("closed")

    def runnable(self, name: str = "tracked") -> Runnable[Any, Any]:
        """The stream as a LangChain runnable (a child run of its own)."""
        return RunnableGenerator(self.sync, self.asynchronous, name=name)

    def bare(self, name: str = "tracked") -> Runnable[Any, Any]:
        """The stream as a runnable whose ``stream`` is the generator itself.

        LangChain's own stream wrapper does not close its inner generator when it is
        closed (it is left to the garbage collector); this one lets a close error reach
        whoever closes the stream.
        """
        return _Bare(self, name)


class _Bare(Runnable[Any, Any]):
    def __init__(self, tracked: TrackedStream, name: str) -> None:
        self.tracked, self.name = tracked, name

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kw: Any) -> Any:
        return list(self.tracked.sync(iter([input])))

    def stream(self, input: Any, config: RunnableConfig | None = None, **kw: Any) -> Iterator[Any]:
        return self.tracked.sync(iter([input]))

    def astream(
        self, input: Any, config: RunnableConfig | None = None, **kw: Any
    ) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        return self.tracked.asynchronous(one())


class RunEnds(BaseCallbackHandler):
    """The chain runs started and not yet ended (or errored)."""

    def __init__(self) -> None:
        self.open: dict[UUID, str | None] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self.open[run_id] = kw.get("name")

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kw: Any) -> None:
        self.open.pop(run_id, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self.open.pop(run_id, None)
