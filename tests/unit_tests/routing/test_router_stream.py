"""RouterRunnable.stream / astream: fail over before the first chunk, settle after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import RunnableGenerator, RunnableLambda

from oscar_langchain.breaker_store import InMemoryBreakerStore
from oscar_langchain.circuit_breaker import BreakerConfig, CircuitBreaker, CircuitState
from oscar_langchain.errors import FailoverError, RouterError
from oscar_langchain.routing import Cheapest, MemoryLimitStore, Route
from oscar_langchain.routing.router import RouterRunnable
from tests.unit_tests.failover_fakes import APIError, RunEnds, TrackedStream


def _down(_: Any) -> Any:
    raise TimeoutError("backend down")


class AuthenticationError(Exception):
    pass


def _cut(inputs: Iterator[Any]) -> Iterator[AIMessageChunk]:
    for _ in inputs:
        pass
    yield AIMessageChunk(content="par")
    raise ConnectionError("connection reset mid-stream")


async def _acut(inputs: AsyncIterator[Any]) -> AsyncIterator[AIMessageChunk]:
    async for _ in inputs:
        pass
    yield AIMessageChunk(content="par")
    raise ConnectionError("connection reset mid-stream")


async def _asleep(seconds: float) -> None:
    return None


def chat(text: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([text] * 3))


def router(*runnables: Any, **kw: Any) -> RouterRunnable:
    routes = [
        Route(name=f"r{i}", runnable=r, input_price=float(i + 1)) for i, r in enumerate(runnables)
    ]
    kw.setdefault("limits", MemoryLimitStore(clock=lambda: 0.0))
    kw.setdefault("sleep", lambda seconds: None)  # retries never really sleep here
    kw.setdefault("asleep", _asleep)
    return RouterRunnable(
        routes=routes, selector=Cheapest(), token_counter=lambda m: 5, complexity=None, **kw
    )


async def collect(r: RouterRunnable, use_async: bool) -> list[Any]:
    if use_async:
        return [c async for c in r.astream("hi")]
    return list(r.stream("hi"))


def in_flight(r: RouterRunnable) -> dict[str, int]:
    return {row["route"]: row["in_flight"] for row in r.status()}


async def test_astream_fails_over_before_first_chunk_and_tags_it():
    times = iter(float(i) for i in range(100))
    r = router(RunnableLambda(_down), chat("hello there"), clock=lambda: next(times))
    chunks = [c async for c in r.astream("hi")]
    assert "".join(c.content for c in chunks) == "hello there"
    meta = chunks[0].response_metadata["oscar_route"]
    assert meta["chosen"] == "r1"
    assert meta["attempts"] == [["r0", "timeout"], ["r0", "timeout"], ["r1", "ok"]]
    stats = r.engine.by_name["r1"].stats
    assert stats.ttft is not None and stats.successes == 1
    assert r.engine.by_name["r0"].stats.failures == 2
    assert in_flight(r) == {"r0": 0, "r1": 0}


@pytest.mark.parametrize("use_async", [False, True])
async def test_failure_after_first_chunk_is_raised_and_settled(use_async):
    r = router(RunnableGenerator(_cut, _acut), chat("never used"))
    got: list[Any] = []
    with pytest.raises(ConnectionError):
        if use_async:
            async for chunk in r.astream("hi"):
                got.append(chunk)
        else:
            for chunk in r.stream("hi"):
                got.append(chunk)
    assert [c.content for c in got] == ["par"]  # no second route after output was shown
    assert in_flight(r) == {"r0": 0, "r1": 0}
    assert r.engine.by_name["r0"].stats.failures == 1
    assert r.breakers is not None and r.breakers["r0"].snapshot().failures == 1


async def test_consumer_stopping_early_gives_booking_and_permit_back_uncounted():
    r = router(chat("one two three four"))
    stream = r.stream("hi")
    next(stream)
    stream.close()
    assert in_flight(r) == {"r0": 0}
    assert r.breakers is not None and r.breakers["r0"].snapshot().calls == 0
    astream = r.astream("hi")
    await anext(astream)
    await astream.aclose()
    assert in_flight(r) == {"r0": 0}
    assert r.breakers["r0"].snapshot().calls == 0
    assert r.engine.by_name["r0"].stats.failures == 0


@pytest.mark.parametrize("use_async", [False, True])
async def test_breaker_opened_elsewhere_is_skipped_at_acquire(use_async):
    # another process sharing the breaker's store opens it: the router's listener never
    # hears of it, so the route is ranked, and refused when the call asks for a permit
    store = InMemoryBreakerStore()
    elsewhere = CircuitBreaker("r0", store=store)
    breakers = {"r0": CircuitBreaker("r0", store=store)}
    r = router(chat("from r0"), chat("from r1"), breakers=breakers)
    elsewhere.trip()
    chunks = await collect(r, use_async)
    assert "".join(c.content for c in chunks) == "from r1"
    assert chunks[0].response_metadata["oscar_route"]["attempts"][0] == ["r0", "circuit_open"]


@pytest.mark.parametrize("use_async", [False, True])
async def test_stream_errors_that_do_not_move_on_and_exhaustion(use_async):
    def auth(_: Any) -> Any:
        raise AuthenticationError("bad key")

    r = router(RunnableLambda(auth), chat("unused"))
    with pytest.raises(AuthenticationError):
        await collect(r, use_async)
    assert in_flight(r) == {"r0": 0, "r1": 0}
    r = router(RunnableLambda(_down), RunnableLambda(_down))
    with pytest.raises(FailoverError) as info:
        await collect(r, use_async)
    assert [a.candidate for a in info.value.attempts] == ["r0", "r0", "r1", "r1"]


def test_forced_open_and_already_open_breakers_are_filtered():
    forced, tripped = CircuitBreaker("r0"), CircuitBreaker("r1")
    forced.force_open()
    tripped.trip()  # opened before the router was built
    r = router(chat("a"), chat("b"), chat("from r2"), breakers={"r0": forced, "r1": tripped})
    decision = r.decide("hi")
    assert dict(decision.rejected) == {"r0": "circuit open", "r1": "circuit open"}
    assert r.invoke("hi").content == "from r2"
    forced.reset()
    assert r.decide("hi").chosen == "r0"


class _RefusingStore(MemoryLimitStore):
    """Reports room, then refuses the booking: another caller took the last slot."""

    def try_acquire(self, route: Any, *, tokens: int, cost: float) -> Any:
        return f"{route.name} taken meanwhile"


class _Events(BaseCallbackHandler):
    def __init__(self) -> None:
        self.annotations: list[dict[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, *, run_id: Any, **kw: Any) -> None:
        self.annotations.append(dict(data))


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream", "astream"])
async def test_no_booking_left_is_a_router_error_and_failures_are_annotated(how):
    r = router(chat("a"), chat("b"), limits=_RefusingStore())
    events = _Events()
    config = {"callbacks": [events]}
    with pytest.raises(RouterError) as info:
        if how == "invoke":
            r.invoke("hi", config)
        elif how == "ainvoke":
            await r.ainvoke("hi", config)
        elif how == "stream":
            list(r.stream("hi", config))
        else:
            [c async for c in r.astream("hi", config)]
    assert info.value.rejections == {"r0": "r0 taken meanwhile", "r1": "r1 taken meanwhile"}
    assert events.annotations[-1]["oscar.route"] == ""  # no route answered
    assert events.annotations[-1]["oscar.route.ranking"] == "r0,r1"


@pytest.mark.parametrize("use_async", [False, True])
async def test_an_empty_stream_is_an_answer_and_settles(use_async):
    def nothing(inputs: Iterator[Any]) -> Iterator[Any]:
        yield from ()

    async def anothing(inputs: AsyncIterator[Any]) -> AsyncIterator[Any]:
        for _ in ():
            yield _

    r = router(RunnableGenerator(nothing, anothing), chat("unused"))
    assert await collect(r, use_async) == []
    assert in_flight(r) == {"r0": 0, "r1": 0}
    assert r.engine.by_name["r0"].stats.successes == 1
    assert r.decide("hi").chosen == "r0"


async def test_the_route_reads_the_attempt_metadata_from_its_config():
    seen: list[dict[str, Any]] = []

    def echo(x: Any, config: Any) -> str:
        seen.append(dict(config["metadata"]))
        return "ok"

    r = router(RunnableLambda(echo))
    cfg: Any = {"metadata": {"user": "u1"}}
    r.invoke("hi", cfg)
    await r.ainvoke("hi", cfg)
    list(r.stream("hi", cfg))
    [c async for c in r.astream("hi", cfg)]
    routes = [(m.get("oscar.route"), m.get("oscar.route.attempt"), m["user"]) for m in seen]
    assert routes == [("r0", 1, "u1")] * 4
    assert cfg == {"metadata": {"user": "u1"}}


async def test_stopping_early_closes_the_route_stream_at_once():
    tracked, ends = TrackedStream("a", "b", "c"), RunEnds()
    r = router(tracked.runnable())
    for chunk in r.stream("hi", {"callbacks": [ends]}):
        assert chunk == "a"
        break
    assert tracked.log == ["open", "closed"]
    assert ends.open == {}  # the route's run ended too
    stream = r.astream("hi", {"callbacks": [ends]})
    assert await anext(stream) == "a"
    await stream.aclose()
    assert tracked.log == ["open", "closed"] * 2  # closed by aclose(), not by the GC
    assert ends.open == {}
    assert in_flight(r) == {"r0": 0}


@pytest.mark.parametrize("use_async", [False, True])
async def test_a_stream_failing_mid_way_is_closed_and_raised(use_async):
    cut = TrackedStream("p", then="cut")
    r = router(cut.runnable(), chat("unused"))
    with pytest.raises(APIError):
        await collect(r, use_async)
    assert cut.log == ["open", "closed"]
    assert in_flight(r) == {"r0": 0, "r1": 0}


# the sync stream's close error is raised where LangChain's stream wrapper lets our
# generator go (it does not close it), so it is reported as unraisable
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_failing_close_still_settles_the_route():
    now = [0.0]
    breaker = CircuitBreaker("r0", BreakerConfig(open_duration=10), clock=lambda: now[0])
    tracked = TrackedStream("a", "b", close_error=RuntimeError("close failed"))
    r = router(tracked.bare(), breakers={"r0": breaker})
    breaker.trip()
    now[0] = 11.0  # half-open: one probe at a time, until that probe is settled
    stream = r.stream("hi")
    assert next(stream) == "a"
    stream.close()
    assert tracked.log == ["open", "closed"]
    assert breaker.snapshot().probes_admitted == 0
    astream = r.astream("hi")
    assert await anext(astream) == "a"
    with pytest.raises(RuntimeError, match="close failed"):
        await astream.aclose()
    assert tracked.log == ["open", "closed"] * 2
    assert breaker.snapshot().probes_admitted == 0
    assert in_flight(r) == {"r0": 0}
    assert await collect(r, use_async=False) == ["a", "b"]  # the probe, which closes it
    assert breaker.snapshot().state is CircuitState.CLOSED
