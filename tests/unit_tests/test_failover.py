"""FailoverRunnable on fake chat models: retries, breakers, overflow, batch, streams, runs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableGenerator, RunnableLambda

from oscar_langchain.circuit_breaker import BreakerConfig, CircuitState
from oscar_langchain.errors import ConfigurationError, ErrorKind, FailoverError
from oscar_langchain.failover import (
    AttemptTimeoutError,
    FailoverRunnable,
    RetryPolicy,
    with_failover,
)
from oscar_langchain.failover_policy import FailoverRoute
from oscar_langchain.failover_stream import TimedChunks
from tests.unit_tests.failover_fakes import (
    APIError,
    FlakyChat,
    RunEnds,
    RunRecorder,
    TrackedStream,
    context_overflow,
)

HANG = 0.25
"""attempt_timeout of the time-out tests: a hung candidate costs this much real time; the
healthy candidate, also called under it (in a worker thread), must answer well within it."""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def build(*candidates: Any, **options: Any) -> tuple[FailoverRunnable, Sleeps, Clock]:
    sleeps, clock = Sleeps(), Clock()
    options.setdefault("retry", RetryPolicy(max_attempts=2, initial_backoff=0.1, jitter=0.0))
    options.setdefault(
        "breaker_config", BreakerConfig(window_size=4, minimum_calls=4, open_duration=10)
    )
    runnable = FailoverRunnable(
        candidates=list(candidates), sleep=sleeps, asleep=sleeps.asleep, clock=clock, **options
    )
    return runnable, sleeps, clock


def test_retries_then_fails_over_with_route_metadata() -> None:
    a = FlakyChat(model_name="a", errors=[APIError(500), APIError(503)])
    b = FlakyChat(model_name="b", reply="from b")
    chain, sleeps, _ = build(a, b)
    out = chain.invoke("hi")
    assert out.content == "from b"
    assert out.response_metadata["oscar.route"] == ["a", "b"]
    assert out.response_metadata["oscar.candidate"] == "b"
    assert out.response_metadata["oscar.attempts"] == 3
    assert (a.calls, b.calls) == (2, 1)
    assert sleeps.waits == [pytest.approx(0.1)]


def test_all_fail_raises_failover_error_with_every_attempt() -> None:
    a = FlakyChat(model_name="a", errors=[APIError(500), APIError(500)])
    b = FlakyChat(model_name="b", errors=[APIError(401, "bad key")])
    chain, _, _ = build(a, b)
    with pytest.raises(FailoverError) as info:
        chain.invoke("hi")
    attempts = info.value.attempts
    assert [(r.candidate, r.attempt, r.classification.kind) for r in attempts] == [
        ("a", 1, ErrorKind.SERVER),
        ("a", 2, ErrorKind.SERVER),
        ("b", 1, ErrorKind.AUTH),
    ]
    assert chain.health()["b"]["calls"] == 0  # auth errors do not count against b


def test_retry_after_is_honoured_and_long_waits_move_on() -> None:
    a = FlakyChat(model_name="a", errors=[APIError(429, "slow down", retry_after=3)])
    chain, sleeps, _ = build(a, FlakyChat(model_name="b"))
    assert chain.invoke("x").response_metadata["oscar.candidate"] == "a"
    assert sleeps.waits == [3.0]
    a2 = FlakyChat(model_name="a", errors=[APIError(429, "later", retry_after=120)])
    chain2, sleeps2, _ = build(a2, FlakyChat(model_name="b"))
    assert chain2.invoke("x").response_metadata["oscar.candidate"] == "b"
    assert sleeps2.waits == []
    assert a2.calls == 1


def test_bad_request_is_not_retried() -> None:
    a = FlakyChat(model_name="a", errors=[APIError(400, "invalid tool schema")])
    chain, sleeps, _ = build(a, FlakyChat(model_name="b"))
    assert chain.invoke("x").response_metadata["oscar.route"] == ["a", "b"]
    assert a.calls == 1 and sleeps.waits == []
    assert chain.health()["a"]["calls"] == 0


def test_context_overflow_skips_to_a_larger_window() -> None:
    small = FlakyChat(model_name="small", errors=[context_overflow()])
    same = FlakyChat(model_name="same")
    big = FlakyChat(model_name="big", reply="big")
    chain, sleeps, _ = build(
        small, same, big, context_windows={"small": 8192, "same": 8192, "big": 128000}
    )
    out = chain.invoke("long prompt")
    assert out.content == "big"
    assert (small.calls, same.calls, big.calls) == (1, 0, 1)
    assert sleeps.waits == []
    assert chain.health()["small"]["calls"] == 0


def test_context_windows_from_a_registry() -> None:
    class Info:
        def __init__(self, window: int) -> None:
            self.context_window = window

    class Registry:
        def get(self, name: str) -> Info:
            from oscar_langchain.errors import UnknownModelError

            if name == "unknown":
                raise UnknownModelError(name)
            return Info({"small": 8000, "big": 100000}[name])

    chain, _, _ = build(
        FlakyChat(model_name="small"),
        FlakyChat(model_name="unknown"),
        FlakyChat(model_name="big"),
        registry=Registry(),
    )
    assert chain._windows == [8000, None, 100000]


def test_open_breaker_is_skipped_without_a_call_then_recovers() -> None:
    a = FlakyChat(model_name="a", errors=[APIError(500)] * 4)
    b = FlakyChat(model_name="b")
    chain, _, clock = build(a, b)
    for _ in range(2):
        chain.invoke("x")  # two calls, two attempts each: 4 failures open a
    assert chain.breakers["a"].state is CircuitState.OPEN
    out = chain.invoke("x")
    assert a.calls == 4  # skipped without a call
    assert out.response_metadata["oscar.route"] == ["a", "b"]
    clock.now = 10.0
    out = chain.invoke("x")  # half-open probe succeeds
    assert out.response_metadata["oscar.candidate"] == "a"
    assert chain.breakers["a"].state is CircuitState.CLOSED
    assert chain.health()["a"]["state"] == "closed"


def test_attempt_timeout_sync_and_async() -> None:
    release = threading.Event()

    def hang(_: Any) -> str:
        release.wait(5)
        return "late"

    chain, _, _ = build(
        RunnableLambda(hang, name="hang"),
        RunnableLambda(lambda x: "fast", name="fast"),
        attempt_timeout=HANG,
        retry=RetryPolicy(max_attempts=1),
    )
    try:
        assert chain.invoke("x") == "fast"
    finally:
        release.set()

    async def ahang(_: Any) -> str:
        await asyncio.Event().wait()
        return "never"

    achain, _, _ = build(
        RunnableLambda(hang, afunc=ahang, name="hang"),
        RunnableLambda(lambda x: "fast", name="fast"),
        attempt_timeout=HANG,
        retry=RetryPolicy(max_attempts=1),
    )
    assert asyncio.run(achain.ainvoke("x")) == "fast"
    with pytest.raises(FailoverError) as info:
        asyncio.run(
            build(
                RunnableLambda(hang, afunc=ahang),
                attempt_timeout=HANG,
                retry=RetryPolicy(max_attempts=1),
            )[0].ainvoke("x")
        )
    assert isinstance(info.value.errors[0], AttemptTimeoutError)


def test_ainvoke_fails_over_and_retries() -> None:
    a = FlakyChat(model_name="a", errors=[APIError(500), APIError(500)])
    chain, sleeps, _ = build(a, FlakyChat(model_name="b", reply="b!"))
    out = asyncio.run(chain.ainvoke("hi"))
    assert out.content == "b!"
    assert sleeps.waits == [pytest.approx(0.1)]
    with pytest.raises(FailoverError):
        asyncio.run(build(FlakyChat(errors=[APIError(401)]))[0].ainvoke("hi"))


def test_batch_only_failed_inputs_move_on() -> None:
    a = FlakyChat(model_name="a", fail_on=["bad"], reply="A")
    b = FlakyChat(model_name="b", reply="B")
    chain, _, _ = build(a, b, retry=RetryPolicy(max_attempts=1))
    outs = chain.batch(["one", "bad", "three"])
    assert [o.content for o in outs] == ["A", "B", "A"]
    assert (a.calls, b.calls) == (3, 1)
    a2 = FlakyChat(model_name="a", fail_on=["bad"], reply="A")
    b2 = FlakyChat(model_name="b", reply="B")
    chain2, _, _ = build(a2, b2, retry=RetryPolicy(max_attempts=1))
    outs = asyncio.run(chain2.abatch(["bad", "two"]))
    assert [o.content for o in outs] == ["B", "A"]
    assert b2.calls == 1


def test_stream_fails_over_before_first_chunk() -> None:
    a = FlakyChat(model_name="a", errors=[APIError(500), APIError(500)])
    b = FlakyChat(model_name="b", reply="hello there world")
    chain, _, _ = build(a, b)
    chunks = list(chain.stream("hi"))
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert merged.content == "hello there world"
    assert merged.response_metadata["oscar.route"] == ["a", "b"]


def test_stream_cut_after_first_chunk_raise_policy() -> None:
    a = FlakyChat(model_name="a", reply="one two three", cut_after=1)
    chain, _, _ = build(a, FlakyChat(model_name="b"))
    got: list[str] = []
    with pytest.raises(FailoverError) as info:
        for chunk in chain.stream("hi"):
            got.append(chunk.content)
    assert got == ["one"]
    assert "after its first chunk" in str(info.value)
    assert chain.health()["a"]["failures"] == 1


def test_stream_cut_after_first_chunk_continue_policy() -> None:
    a = FlakyChat(model_name="a", reply="The answer", cut_after=1)
    b = FlakyChat(model_name="b", reply="answer is 42")
    chain, _, _ = build(a, b, stream_policy="continue", continuation_prompt="go on")
    text = "".join(c.content for c in chain.stream([HumanMessage("q?")]))
    assert text == "Theanswer is 42"
    sent = b.seen[-1]
    assert [type(m) for m in sent] == [HumanMessage, AIMessage, HumanMessage]
    assert (sent[1].content, sent[2].content) == ("The", "go on")


def test_astream_before_and_after_first_chunk() -> None:
    async def collect(chain: FailoverRunnable) -> list[Any]:
        return [c async for c in chain.astream("hi")]

    a = FlakyChat(model_name="a", errors=[APIError(503), APIError(503)])
    chain, _, _ = build(a, FlakyChat(model_name="b", reply="x y"))
    chunks = asyncio.run(collect(chain))
    assert "".join(c.content for c in chunks) == "x y"
    assert chunks[-1].response_metadata["oscar.candidate"] == "b"

    cut = FlakyChat(model_name="a", reply="p q r", cut_after=2)
    chain2, _, _ = build(cut, FlakyChat(model_name="b", reply="r"), stream_policy="continue")
    assert "".join(c.content for c in asyncio.run(collect(chain2))) == "p qr"
    chain3, _, _ = build(FlakyChat(reply="p q", cut_after=1))
    with pytest.raises(FailoverError):
        asyncio.run(collect(chain3))
    chain4, _, _ = build(FlakyChat(errors=[APIError(401)]))
    with pytest.raises(FailoverError):
        asyncio.run(collect(chain4))


def test_stream_of_non_messages_and_early_stop_releases_permit() -> None:
    chain, _, _ = build(RunnableLambda(lambda x: x * 2, name="double"))
    assert list(chain.stream(3)) == [6]
    a = FlakyChat(model_name="a", reply="a b c d")
    chain2, _, _ = build(a)
    stream = chain2.stream("hi")
    next(stream)
    stream.close()
    snap = chain2.health()["a"]
    assert (snap["calls"], snap["failures"]) == (0, 0)
    with pytest.raises(FailoverError):
        list(build(FlakyChat(errors=[APIError(401)]))[0].stream("x"))


def test_each_attempt_is_a_child_run_and_route_is_annotated() -> None:
    a = FlakyChat(model_name="a", errors=[APIError(500), APIError(500)])
    b = FlakyChat(model_name="b")
    chain, _, _ = build(a, b)

    async def astream(cfg: Any) -> None:
        async for _ in chain.astream("hi", cfg):
            pass

    for mode in ("invoke", "batch", "stream", "astream"):
        rec = RunRecorder()
        cfg = {"callbacks": [rec]}
        if mode == "invoke":
            chain.invoke("hi", cfg)
        elif mode == "batch":
            chain.batch(["hi"], cfg)
        elif mode == "stream":
            list(chain.stream("hi", cfg))
        else:
            asyncio.run(astream(cfg))
        root = next(r for r in rec.runs if r["parent"] is None)
        chats = [r for r in rec.runs if r["kind"] == "chat"]
        assert chats and all(r["parent"] == root["id"] for r in chats), mode
        assert "oscar.candidate:b" in chats[-1]["tags"]
        assert chats[-1]["metadata"]["oscar.candidate"] == "b"
        assert chats[-1]["metadata"]["oscar.attempt"] == 1
        route = [data for name, data in rec.custom if name == "oscar.annotate"]
        assert route and route[-1]["oscar.breaker.state"] == "closed", mode
        a.errors = [APIError(500), APIError(500)]


def test_with_failover_helper_and_validation() -> None:
    chain = with_failover(
        FlakyChat(model_name="m"),
        FlakyChat(model_name="m"),
        retry=RetryPolicy(max_attempts=1),
        breaker_config=BreakerConfig(window_size=3, minimum_calls=1),
    )
    assert list(chain.health()) == ["m", "m#2"]
    # pydantic wraps our ConfigurationError (a ValueError); the message names the field
    for field, kwargs in [
        ("candidates", {"candidates": []}),
        ("names", {"candidates": [FlakyChat()], "names": ["a", "b"]}),
        ("attempt_timeout", {"candidates": [FlakyChat()], "attempt_timeout": 0}),
        ("breaker_store", {"candidates": [FlakyChat()], "breaker_store": object()}),
    ]:
        with pytest.raises(ValueError, match=f"{field}: "):
            FailoverRunnable(**kwargs)
    with pytest.raises(ConfigurationError):
        RetryPolicy(jitter=-1)


def test_route_with_unknown_overflow_window() -> None:
    route = FailoverRoute(["a", "b"], [None, 4000])
    route.record(0, 1, context_overflow(), 0.0)
    assert route.eligible(1)
    assert "every failover candidate failed" in str(route.error())


def test_sync_stream_attempt_timeout_before_and_after_first_chunk() -> None:
    release = threading.Event()

    def hang_at_once(inputs: Iterator[Any]) -> Iterator[str]:
        for _ in inputs:
            pass
        release.wait(5)
        yield "late"

    def hang_after_one(inputs: Iterator[Any]) -> Iterator[str]:
        for _ in inputs:
            pass
        yield "early"
        release.wait(5)
        yield "late"

    fast = RunnableLambda(lambda x: f"fast:{len(x) if isinstance(x, list) else x}", name="fast")
    options: dict[str, Any] = {"attempt_timeout": HANG, "retry": RetryPolicy(max_attempts=1)}
    try:
        chain, _, _ = build(RunnableGenerator(hang_at_once, name="hang"), fast, **options)
        assert list(chain.stream("x")) == ["fast:x"]
        timeouts = chain.health()["hang"]
        assert (timeouts["calls"], timeouts["failures"]) == (1, 1)

        chain2, _, _ = build(RunnableGenerator(hang_after_one, name="hang"), fast, **options)
        got: list[str] = []
        with pytest.raises(FailoverError, match="after its first chunk") as info:
            got.extend(chain2.stream("x"))
        assert got == ["early"]
        assert isinstance(info.value.errors[0], AttemptTimeoutError)

        chain3, _, _ = build(
            RunnableGenerator(hang_after_one, name="hang"),
            fast,
            stream_policy="continue",
            **options,
        )
        # the backup is sent the conversation, the partial answer and the continuation prompt
        assert list(chain3.stream("x")) == ["early", "fast:3"]
    finally:
        release.set()


def test_timed_chunks_pass_errors_and_stop_on_close() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise APIError(502, "cut")

    chunks = TimedChunks(broken, 5.0, TimeoutError)
    assert chunks.next() == 1
    with pytest.raises(APIError, match="cut"):
        chunks.next()
    gate, closed = threading.Event(), threading.Event()

    def endless() -> Iterator[int]:
        try:
            while True:
                gate.wait(5)
                yield 0
        finally:
            closed.set()

    chunks2 = TimedChunks(endless, 5.0, TimeoutError)
    chunks2.close()
    gate.set()
    assert closed.wait(5)  # the worker stopped and closed the candidate's stream
    chain, _, _ = build(FlakyChat(model_name="a", reply="a b c"), attempt_timeout=5.0)
    stream = chain.stream("hi")
    assert next(stream).content == "a"
    stream.close()  # stop early: the permit is given back uncounted
    assert chain.health()["a"]["calls"] == 0


def test_astream_stopped_early_or_cancelled_gives_the_permit_back() -> None:
    chain, _, _ = build(FlakyChat(model_name="a", reply="a b c"))

    async def stop_early() -> None:
        stream = chain.astream("hi")
        assert (await anext(stream)).content == "a"
        await stream.aclose()

    async def hang_after_one(inputs: AsyncIterator[Any]) -> AsyncIterator[str]:
        async for _ in inputs:
            pass
        yield "a"
        await asyncio.Event().wait()
        yield "never"

    hanging, _, _ = build(RunnableGenerator(hang_after_one, name="hang"))

    async def cancel() -> None:
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in hanging.astream("hi"):
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()  # while the stream waits for the candidate's next chunk
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stop_early())
    asyncio.run(cancel())
    for snap in (chain.health()["a"], hanging.health()["hang"]):
        assert (snap["calls"], snap["failures"]) == (0, 0)


def test_the_candidate_reads_the_attempt_metadata_from_its_config() -> None:
    seen: list[dict[str, Any]] = []

    def echo(x: str, config: Any) -> str:
        seen.append(dict(config["metadata"]))
        if len(seen) == 1:
            raise APIError(500)  # the first call fails: the retry is attempt 2
        return x

    chain, _, _ = build(RunnableLambda(echo, name="echo"))
    cfg: Any = {"metadata": {"user": "u1"}}
    assert chain.invoke("hi", cfg) == "hi"
    asyncio.run(chain.ainvoke("hi", cfg))
    chain.batch(["hi"], cfg)
    list(chain.stream("hi", cfg))
    attempts = [(m.get("oscar.candidate"), m.get("oscar.attempt"), m["user"]) for m in seen]
    assert attempts == [("echo", 1, "u1"), ("echo", 2, "u1")] + [("echo", 1, "u1")] * 3
    assert cfg == {"metadata": {"user": "u1"}}  # the caller's config is left alone


def _one_probe_at_a_time(chain: FailoverRunnable, clock: Any) -> None:
    """Half-open the first breaker: it admits one probe until that probe is settled."""
    next(iter(chain.breakers.values())).trip()
    clock.now = 11.0  # past open_duration


def _probes(chain: FailoverRunnable) -> int:
    return int(next(iter(chain.health().values()))["probes_admitted"])


def test_stopping_early_closes_the_candidate_stream_at_once() -> None:
    tracked, ends = TrackedStream("a", "b", "c"), RunEnds()
    chain, _, _ = build(tracked.runnable("a"))
    for chunk in chain.stream("hi", {"callbacks": [ends]}):
        assert chunk == "a"
        break
    assert tracked.log == ["open", "closed"]
    assert ends.open == {}  # the candidate's run ended too

    async def stop_early() -> None:
        stream = chain.astream("hi", {"callbacks": [ends]})
        assert await anext(stream) == "a"
        await stream.aclose()
        assert tracked.log == ["open", "closed"] * 2  # closed by aclose(), not by the GC
        assert ends.open == {}

    asyncio.run(stop_early())
    assert next(iter(chain.health().values()))["calls"] == 0


def test_a_stream_cut_mid_way_is_closed_before_the_next_candidate() -> None:
    async def collect(chain: FailoverRunnable) -> list[Any]:
        return [c async for c in chain.astream("hi")]

    for use_async in (False, True):
        cut, backup = TrackedStream("p", then="cut"), TrackedStream("q")
        chain, _, _ = build(cut.runnable("a"), backup.runnable("b"), stream_policy="continue")
        got = asyncio.run(collect(chain)) if use_async else list(chain.stream("hi"))
        assert got == ["p", "q"]
        assert (cut.log, backup.log) == (["open", "closed"], ["open", "closed"])


def test_first_chunk_timeout_closes_the_hung_stream() -> None:
    hung = TrackedStream(then="hang")
    chain, _, _ = build(hung.bare("hang"), attempt_timeout=0.005, retry=RetryPolicy(max_attempts=1))

    async def collect() -> list[Any]:
        return [c async for c in chain.astream("hi")]

    with pytest.raises(FailoverError) as info:
        asyncio.run(collect())
    assert isinstance(info.value.errors[0], AttemptTimeoutError)
    assert hung.log == ["open", "closed"]


# the sync stream's close error is raised where LangChain's stream wrapper lets our
# generator go (it does not close it), so it is reported as unraisable
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failing_close_still_settles_the_attempt() -> None:
    tracked = TrackedStream("a", "b", close_error=RuntimeError("close failed"))
    chain, _, clock = build(tracked.bare("a"))
    _one_probe_at_a_time(chain, clock)
    stream = chain.stream("hi")
    assert next(stream) == "a"
    stream.close()
    assert tracked.log == ["open", "closed"]
    assert _probes(chain) == 0  # the probe was given back: the next request may probe

    async def stop_early() -> None:
        astream = chain.astream("hi")
        assert await anext(astream) == "a"
        with pytest.raises(RuntimeError, match="close failed"):
            await astream.aclose()

    asyncio.run(stop_early())
    assert tracked.log == ["open", "closed"] * 2
    assert _probes(chain) == 0
    assert list(chain.stream("hi")) == ["a", "b"]  # the probe succeeds and closes the breaker
    assert next(iter(chain.health().values()))["state"] == "closed"
