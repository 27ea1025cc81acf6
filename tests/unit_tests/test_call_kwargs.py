"""Call-time kwargs (``stop=...``) reach the wrapped models through every shell and mode.

A chat model takes ``invoke(x, stop=[...])`` and ``.bind(stop=[...])``; the cache,
failover and router shells must too, passing the arguments on to every model they
call (each failover candidate, each routed model), with callbacks still nested.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel, FakeListChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable

from oscar_langchain import CachedRunnable, FailoverRunnable
from oscar_langchain.failover_policy import RetryPolicy
from oscar_langchain.routing import Route
from oscar_langchain.routing.router import RouterRunnable
from tests.unit_tests.failover_fakes import APIError, RunRecorder

STOP = ["Observation:"]


class KwargsChat(BaseChatModel):
    """Answers ``reply``, recording each call's ``stop`` and extra kwargs in ``calls``.

    The first ``fail_first`` calls raise a retryable 500 (before any chunk).
    """

    reply: str = "Thought: done"
    fail_first: int = 0
    calls: list[tuple[str, Any, dict[str, Any]]] = []
    model_name: str = "kwargs-fake"

    @property
    def _llm_type(self) -> str:
        return "kwargs-fake"

    def _record(self, mode: str, stop: Any, kwargs: dict[str, Any]) -> None:
        self.calls.append((mode, stop, dict(kwargs)))
        if self.fail_first:
            self.fail_first -= 1
            raise APIError(500, "down")

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self._record("generate", stop, kw)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.reply))])

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self._record("agenerate", stop, kw)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self.reply))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        self._record("stream", stop, kw)
        for word in self.reply.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))

    async def _astream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        self._record("astream", stop, kw)
        for word in self.reply.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))


async def _no_wait(_: float) -> None:
    return None


def cached(models: list[KwargsChat]) -> Runnable[Any, Any]:
    return CachedRunnable(runnable=models[0])


def failover(models: list[KwargsChat], **kw: Any) -> FailoverRunnable:
    return FailoverRunnable(
        candidates=list(models),
        retry=RetryPolicy(max_attempts=1),
        sleep=lambda _: None,
        asleep=_no_wait,
        **kw,
    )


def router(models: list[KwargsChat]) -> RouterRunnable:
    routes = [
        Route(name=f"r{i}", runnable=m, context_window=8192, input_price=float(i + 1))
        for i, m in enumerate(models)
    ]
    return RouterRunnable(
        routes=routes,
        retry=RetryPolicy(max_attempts=1),
        sleep=lambda _: None,
        asleep=_no_wait,
        token_counter=lambda _: 5,
        complexity=None,
        default_output_tokens=16,
    )


SHELLS: dict[str, Callable[[list[KwargsChat]], Runnable[Any, Any]]] = {
    "cached": cached,
    "failover": failover,
    "router": router,
}


def _run(runnable: Runnable[Any, Any], mode: str, config: Any = None, **kwargs: Any) -> Any:
    """One call of ``runnable`` in ``mode``; returns the (merged) output."""
    if mode == "invoke":
        return runnable.invoke("hi", config, **kwargs)
    if mode == "ainvoke":
        return asyncio.run(runnable.ainvoke("hi", config, **kwargs))
    if mode == "batch":
        (out,) = runnable.batch(["hi"], config, **kwargs)
        return out
    if mode == "abatch":
        (out,) = asyncio.run(runnable.abatch(["hi"], config, **kwargs))
        return out
    if mode == "stream":
        return _merged(list(runnable.stream("hi", config, **kwargs)))

    async def collect() -> list[Any]:
        return [c async for c in runnable.astream("hi", config, **kwargs)]

    assert mode == "astream"
    return _merged(asyncio.run(collect()))


def _merged(chunks: list[Any]) -> Any:
    out = chunks[0]
    for chunk in chunks[1:]:
        out = out + chunk
    return out


MODES = ["invoke", "ainvoke", "batch", "abatch", "stream", "astream"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_call_kwargs_reach_the_model(shell: str, mode: str) -> None:
    model = KwargsChat(calls=[])
    out = _run(SHELLS[shell]([model]), mode, stop=STOP, seed=7)
    assert "Thought:" in out.content
    ((_, stop, extra),) = model.calls
    assert stop == STOP and extra == {"seed": 7}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_bind_stop_on_the_shell(shell: str, mode: str) -> None:
    """A ReAct-style ``llm.bind(stop=["Observation:"])`` on our shell, with callbacks."""
    model, rec = KwargsChat(calls=[]), RunRecorder()
    bound = SHELLS[shell]([model]).bind(stop=STOP)
    _run(bound, mode, {"callbacks": [rec]})
    assert [stop for _, stop, _ in model.calls] == [STOP]
    # the model's run still nests under the shell's run
    (chat,) = [r for r in rec.runs if r["kind"] == "chat"]
    assert chat["parent"] in {r["id"] for r in rec.runs if r["kind"] == "chain"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shell", ["failover", "router"])
def test_every_candidate_tried_gets_the_kwargs(shell: str, mode: str) -> None:
    first, second = KwargsChat(calls=[], fail_first=1), KwargsChat(calls=[], reply="second")
    out = _run(SHELLS[shell]([first, second]), mode, stop=STOP)
    assert out.content == "second"
    assert [c[1] for c in first.calls] == [STOP] and [c[1] for c in second.calls] == [STOP]


@pytest.mark.parametrize("mode", MODES)
def test_failover_with_attempt_timeout_passes_the_kwargs(mode: str) -> None:
    """The timed paths (worker thread for invoke, ``TimedChunks`` for stream) too."""
    first, second = KwargsChat(calls=[], fail_first=1), KwargsChat(calls=[], reply="second")
    out = _run(failover([first, second], attempt_timeout=30.0), mode, stop=STOP)
    assert out.content == "second"
    assert [c[1] for c in first.calls + second.calls] == [STOP, STOP]


def test_failover_continuation_stream_passes_the_kwargs() -> None:
    class CutChat(KwargsChat):
        def _stream(self, *args: Any, **kw: Any) -> Iterator[ChatGenerationChunk]:
            yield from list(super()._stream(*args, **kw))[:1]
            raise APIError(502, "stream cut")

    cut, rest = CutChat(calls=[], reply="half way"), KwargsChat(calls=[], reply="rest")
    chain = failover([cut, rest], stream_policy="continue")
    assert "rest" in _merged(list(chain.stream("hi", stop=STOP))).content
    assert [c[1] for c in cut.calls + rest.calls] == [STOP, STOP]


@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
def test_cache_key_includes_the_kwargs(mode: str) -> None:
    model = KwargsChat(calls=[])
    shell = CachedRunnable(runnable=model)
    _run(shell, mode, stop=["\n"])
    _run(shell, mode, stop=["Observation:"])  # differs only in stop: a miss
    _run(shell, mode)  # no stop at all: a miss
    _run(shell, mode, stop=["\n"])  # identical to the first: a hit
    _run(shell.bind(stop=["\n"]), mode)  # bound or passed: the same call, a hit
    assert [c[1] for c in model.calls] == [["\n"], ["Observation:"], None]
    assert shell.stats()["hits"] == 2


def test_cache_key_kwargs_from_the_reproducer() -> None:
    """The second half of the reviewer's r_cache_config_key.py."""
    shell = CachedRunnable(runnable=FakeListChatModel(responses=["a", "b"]))
    assert shell.invoke("hello", stop=["\n"]).content == "a"
    assert shell.invoke("hello").content == "b"
    assert shell.invoke("hello", stop=["\n"]).content == "a"


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_batch_return_exceptions_with_kwargs(shell: str) -> None:
    class PickyChat(KwargsChat):
        def _generate(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> ChatResult:
            if messages[-1].content == "bad":
                raise ValueError("bad input")
            return super()._generate(messages, *args, **kw)

    model = PickyChat(calls=[])
    outs = SHELLS[shell]([model]).batch(["hi", "bad"], stop=STOP, return_exceptions=True)
    assert outs[0].content == "Thought: done" and isinstance(outs[1], Exception)
    assert [c[1] for c in model.calls] == [STOP]


@pytest.mark.parametrize("mode", ["invoke", "batch", "stream"])
@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_callbacks_still_nest_with_kwargs(shell: str, mode: str) -> None:
    model, rec = KwargsChat(calls=[]), RunRecorder()
    runnable = SHELLS[shell]([model])
    _run(runnable, mode, {"callbacks": [rec], "tags": ["outer"]}, stop=STOP)
    (root,) = [r for r in rec.runs if r["parent"] is None]
    (chat,) = [r for r in rec.runs if r["kind"] == "chat"]
    assert chat["parent"] == root["id"] and "outer" in chat["tags"]


def _modelless() -> list[Runnable[Any, Any]]:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from oscar_langchain.retrieval.query_optimizer import QueryOptimizer
    from oscar_langchain.splitter import SemanticTextSplitter

    return [SemanticTextSplitter(embeddings=DeterministicFakeEmbedding(size=8)), QueryOptimizer()]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("index", [0, 1], ids=["splitter", "query_optimizer"])
def test_shells_without_a_model_reject_kwargs_by_name(index: int, mode: str) -> None:
    runnable = _modelless()[index]
    with pytest.raises(TypeError, match=f"{runnable.get_name()} takes no call-time .*: stop"):
        _run(runnable, mode, stop=STOP)
    assert _run(runnable, mode) is not None  # without kwargs: as before
