from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

from oscar_langchain.circuit_breaker import BreakerConfig
from oscar_langchain.errors import FailoverError, RouterError
from oscar_langchain.failover_policy import RetryPolicy
from oscar_langchain.models import ModelInfo, ModelRegistry
from oscar_langchain.routing import (
    BestQuality,
    Cheapest,
    MemoryLimitStore,
    Route,
    ThompsonSelector,
)
from oscar_langchain.routing.router import RouterRunnable
from tests.unit_tests.failover_fakes import APIError, FlakyChat, context_overflow

REGISTRY = ModelRegistry(
    [
        ModelInfo(
            name="cheap-small",
            context_window=1024,
            max_output_tokens=512,
            input_price=0.1,
            output_price=0.4,
            quality=0.4,
        ),
        ModelInfo(
            name="mid",
            context_window=8192,
            input_price=1.0,
            output_price=2.0,
            quality=0.7,
            capabilities=frozenset({"tools"}),
        ),
        ModelInfo(
            name="large",
            context_window=128_000,
            input_price=5.0,
            output_price=15.0,
            quality=0.95,
            capabilities=frozenset({"tools", "vision"}),
        ),
    ]
)


def fake(text: str) -> FakeListChatModel:
    return FakeListChatModel(responses=[text])


def make_router(**kw: Any) -> RouterRunnable:
    routes = kw.pop("routes", None) or [
        Route(name=n, runnable=fake(f"from {n}"), model=n) for n in ("cheap-small", "mid", "large")
    ]
    kw.setdefault("selector", Cheapest())
    kw.setdefault("registry", REGISTRY)
    kw.setdefault("default_output_tokens", 256)
    kw.setdefault("sleep", WAITS.append)  # retries never really sleep in unit tests
    kw.setdefault("asleep", _asleep)
    return RouterRunnable(routes=routes, **kw)


WAITS: list[float] = []


async def _asleep(seconds: float) -> None:
    WAITS.append(seconds)


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[tuple[Any, Any, list[str]]] = []
        self.events: list[dict[str, Any]] = []

    def on_chain_start(self, serialized, inputs, *, run_id, parent_run_id=None, tags=None, **kw):
        self.starts.append((run_id, parent_run_id, tags or []))

    def on_chat_model_start(self, serialized, messages, *, run_id, parent_run_id=None, **kw):
        self.starts.append((run_id, parent_run_id, kw.get("tags") or []))

    def on_custom_event(self, name, data, *, run_id, **kw):
        self.events.append(dict(data))


def test_context_window_skips_cheapest_for_long_input():
    router = make_router()
    short = router.invoke("What is 2 + 2?")
    assert short.content == "from cheap-small"
    long_text = "Summarise this report. " + "The quarterly numbers went up again. " * 300
    out = router.invoke(long_text)
    assert out.content == "from mid"
    meta = out.response_metadata["oscar_route"]
    assert meta["chosen"] == "mid"
    assert meta["rejected"]["cheap-small"].startswith("context window: ")
    assert meta["input_tokens"] > 1024 - 256
    assert [r[0] for r in meta["ranking"]] == ["mid", "large"]


def test_capabilities_tags_and_max_output_from_config():
    router = make_router(
        routes=[
            Route(name="cheap-small", runnable=fake("c"), model="cheap-small", tags={"eu"}),
            Route(name="mid", runnable=fake("m"), model="mid"),
            Route(name="large", runnable=fake("l"), model="large", tags={"eu"}),
        ]
    )
    cfg = {"configurable": {"route_capabilities": ["tools"]}}
    assert router.invoke("hi", cfg).content == "m"
    assert router.invoke("hi", {"configurable": {"route_tags": ["eu"]}}).content == "c"
    cfg = {"configurable": {"route_tags": ["eu"], "route_capabilities": ["tools"]}}
    assert router.invoke("hi", cfg).content == "l"
    assert router.invoke("hi", {"configurable": {"max_output_tokens": 600}}).content == "m"
    image = [HumanMessage(content=[{"type": "image_url", "image_url": {"url": "x"}}])]
    assert router.invoke(image).content == "l"


def test_router_error_lists_every_rejection():
    router = make_router()
    with pytest.raises(RouterError) as info:
        router.invoke("hi", {"configurable": {"route_capabilities": ["audio"]}})
    assert set(info.value.rejections) == {"cheap-small", "mid", "large"}
    assert "missing capabilities: audio" in str(info.value)


def _down(_: Any) -> Any:
    raise TimeoutError("backend down")


class AuthenticationError(Exception):
    pass


def test_failover_follows_ranking_and_records_attempts():
    rec = Recorder()
    router = make_router(
        routes=[
            Route(name="cheap-small", runnable=RunnableLambda(_down), model="cheap-small"),
            Route(name="mid", runnable=fake("from mid"), model="mid"),
            Route(name="large", runnable=fake("from large"), model="large"),
        ]
    )
    out = router.invoke("hi", {"callbacks": [rec]})
    assert out.content == "from mid"
    meta = out.response_metadata["oscar_route"]
    # the failover core retried the time-out once on the same route, then moved on
    assert meta["attempts"] == [
        ["cheap-small", "timeout"],
        ["cheap-small", "timeout"],
        ["mid", "ok"],
    ]
    assert rec.events[-1]["oscar.route"] == "mid"
    root = rec.starts[0][0]
    children = [s for s in rec.starts[1:] if s[1] == root]
    assert {t for s in children for t in s[2] if t.startswith("route:")} == {
        "route:cheap-small",
        "route:mid",
    }
    status = {r["route"]: r for r in router.status()}
    assert status["cheap-small"]["failures"] == 2 and status["mid"]["successes"] == 1
    assert status["cheap-small"]["in_flight"] == 0


def test_failover_off_and_non_retryable_errors_raise():
    def auth(_: Any) -> Any:
        raise AuthenticationError("bad key")

    routes = [
        Route(name="cheap-small", runnable=RunnableLambda(_down), model="cheap-small"),
        Route(name="mid", runnable=fake("from mid"), model="mid"),
    ]
    with pytest.raises(TimeoutError):
        make_router(routes=routes, failover=False).invoke("hi")
    routes[0] = Route(name="cheap-small", runnable=RunnableLambda(auth), model="cheap-small")
    with pytest.raises(AuthenticationError):
        make_router(routes=routes).invoke("hi")


def test_all_routes_failing_raise_failover_error():
    routes = [
        Route(name=n, runnable=RunnableLambda(_down), model=n) for n in ("cheap-small", "mid")
    ]
    with pytest.raises(FailoverError) as info:
        make_router(routes=routes, max_attempts=2).invoke("hi")
    assert [(a.candidate, a.attempt) for a in info.value.attempts] == [
        ("cheap-small", 1),
        ("cheap-small", 2),
        ("mid", 1),
        ("mid", 2),
    ]
    assert {a.classification.kind.value for a in info.value.attempts} == {"timeout"}


def test_breaker_opens_and_route_is_filtered_then_probed():
    now = [0.0]
    from oscar_langchain.circuit_breaker import CircuitBreaker

    cfg = BreakerConfig(window_size=2, minimum_calls=2, open_duration=30)
    breakers = {n: CircuitBreaker(n, cfg, clock=lambda: now[0]) for n in ("cheap-small", "mid")}
    calls = {"n": 0}

    def flaky(_: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise TimeoutError("down")
        return AIMessage("cheap back")

    routes = [
        Route(name="cheap-small", runnable=RunnableLambda(flaky), model="cheap-small"),
        Route(name="mid", runnable=fake("from mid"), model="mid"),
    ]
    router = make_router(routes=routes, breakers=breakers)
    assert router.invoke("hi").content == "from mid"
    assert router.invoke("hi").content == "from mid"
    decision = router.decide("hi")
    assert decision.rejected == (("cheap-small", "circuit open"),)
    assert {r["route"]: r["breaker"] for r in router.status()}["cheap-small"] == "open"
    now[0] = 31.0
    assert router.invoke("hi").content == "cheap back"


def test_limits_skip_to_next_route_and_error_when_none_left():
    store = MemoryLimitStore(clock=lambda: 0.0)
    routes = [
        Route(name="cheap-small", runnable=fake("c"), model="cheap-small", rpm=2),
        Route(name="mid", runnable=fake("m"), model="mid", rpm=1),
    ]
    router = make_router(routes=routes, limits=store)
    got = [router.invoke("hi").content for _ in range(3)]
    assert got == ["c", "c", "m"]
    with pytest.raises(RouterError) as info:
        router.invoke("hi")
    assert "rpm limit reached (2/2)" in info.value.rejections["cheap-small"]


def test_router_limits_exact_under_threads_and_real_usage_settles():
    store = MemoryLimitStore(clock=lambda: 0.0)

    def model(_: Any) -> AIMessage:
        return AIMessage(
            "x", usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        )

    routes = [Route(name="a", runnable=RunnableLambda(model), rpm=30, input_price=1.0)]
    router = RouterRunnable(
        routes=routes,
        limits=store,
        token_counter=lambda m: 10,
        selector=Cheapest(),
        registry=REGISTRY,
    )
    ok, refused = [], []
    lock = threading.Lock()

    def worker():
        for _ in range(10):
            try:
                router.invoke("hi")
                with lock:
                    ok.append(1)
            except RouterError:
                with lock:
                    refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(ok), len(refused)) == (30, 30)
    u = store.usage(["a"])["a"]
    assert (u.tokens, u.in_flight) == (30 * 15, 0)
    assert u.spent == pytest.approx(30 * 10 * 1.0 / 1e6)


async def test_async_invoke_failover_and_concurrent_budget():
    store = MemoryLimitStore(clock=lambda: 0.0)

    async def slow(_: Any) -> AIMessage:
        await asyncio.sleep(0)
        return AIMessage("paid")

    routes = [
        Route(name="cheap-small", runnable=RunnableLambda(_down), model="cheap-small"),
        Route(
            name="paid",
            runnable=RunnableLambda(lambda x: x, afunc=slow),
            input_price=1000.0,
            budget=0.1,
        ),
    ]
    router = make_router(
        routes=routes, limits=store, token_counter=lambda m: 10, default_output_tokens=1
    )
    results = await asyncio.gather(
        *(router.ainvoke("hi") for _ in range(15)), return_exceptions=True
    )
    served = [r for r in results if isinstance(r, AIMessage)]
    assert len(served) == 10  # 10 x $0.01 = $0.10 budget, exactly
    assert all(isinstance(r, (FailoverError, RouterError)) for r in results if r not in served)
    assert served[0].response_metadata["oscar_route"]["attempts"][:2] == [
        ["cheap-small", "timeout"],
        ["cheap-small", "timeout"],
    ]


def test_stream_fails_over_before_first_chunk_and_records_ttft():
    times = iter(float(i) for i in range(100))
    routes = [
        Route(name="cheap-small", runnable=RunnableLambda(_down), model="cheap-small"),
        Route(
            name="mid", runnable=GenericFakeChatModel(messages=iter(["hello there"])), model="mid"
        ),
    ]
    rec = Recorder()
    router = make_router(routes=routes, clock=lambda: next(times))
    chunks = list(router.stream("hi", {"callbacks": [rec]}))
    assert "".join(c.content for c in chunks) == "hello there"
    assert chunks[0].response_metadata["oscar_route"]["chosen"] == "mid"
    stats = router.engine.by_name["mid"].stats
    assert stats.ttft is not None and stats.successes == 1
    assert any(e.get("oscar.route") == "mid" for e in rec.events)


def test_feedback_reaches_adaptive_selector():
    sel = ThompsonSelector(rng=random.Random(0))
    router = make_router(selector=sel)
    rec = Recorder()
    out = router.invoke("hi", {"callbacks": [rec]})
    run_id = rec.starts[0][0]
    chosen = out.response_metadata["oscar_route"]["chosen"]
    before = sel.estimates()[chosen][0]
    assert router.feedback(run_id, 1.0) is True
    assert sel.estimates()[chosen][0] > before
    assert router.feedback("00000000-0000-0000-0000-000000000000", 1.0) is False
    assert make_router().feedback(run_id, 1.0) is False


def test_status_table_and_plain_data():
    router = make_router(
        routes=[Route(name="a", runnable=fake("x"), rpm=10, budget=2.0, input_price=1.0)],
        token_counter=lambda m: 5,
    )
    router.invoke("hi")
    rows = router.status()
    assert rows[0]["requests"] == 1 and rows[0]["budget_left"] < 2.0
    assert rows[0]["breaker"] == "closed" and rows[0]["limits"] == "memory"
    table = router.status_table()
    assert table.splitlines()[0].split()[:3] == ["route", "breaker", "in-flight"]
    assert "1/10" in table


def test_generic_runnables_and_batch():
    router = make_router(
        routes=[Route(name="echo", runnable=RunnableLambda(lambda x: f"echo {x['q']}"))],
        token_counter=lambda m: 1,
        selector=BestQuality(),
        breakers={},
    )
    assert router.batch([{"q": 1}, {"q": 2}]) == ["echo 1", "echo 2"]
    assert router.decide({"q": 3}).chosen == "echo"


def test_configuration_errors():
    # pydantic wraps the ConfigurationError (a ValueError) raised while building
    with pytest.raises(ValueError, match="routes: duplicate route names"):
        make_router(routes=[Route(name="a", runnable=None), Route(name="a", runnable=None)])
    with pytest.raises(ValueError, match="routes: need at least one route"):
        RouterRunnable(routes=[], token_counter=len)
    with pytest.raises(ValueError):
        make_router(default_output_tokens=0)


def test_retries_wait_with_backoff_and_retry_after_then_answer_on_the_same_route():
    waits: list[float] = []
    flaky = FlakyChat(reply="cheap after all", errors=[APIError(429, "slow down", retry_after=7)])
    router = make_router(
        routes=[
            Route(name="cheap-small", runnable=flaky, model="cheap-small"),
            Route(name="mid", runnable=fake("from mid"), model="mid"),
        ],
        retry=RetryPolicy(max_attempts=3, initial_backoff=0.5, jitter=0.0),
        sleep=waits.append,
    )
    out = router.invoke("hi")
    assert out.content == "cheap after all"
    assert out.response_metadata["oscar_route"]["attempts"] == [
        ["cheap-small", "rate_limit"],
        ["cheap-small", "ok"],
    ]
    assert waits == [7.0]  # Retry-After beats the 0.5 s backoff
    assert router.status()[0]["in_flight"] == 0


async def test_context_overflow_skips_routes_whose_window_is_no_larger():
    # a stated window is only an estimate against the backend's own tokenizer: the 400
    # proves 8192 too small, so "mid" (also 8192) is skipped for "large" without a call
    registry = ModelRegistry(
        [
            ModelInfo(name="a", context_window=8192, input_price=0.1),
            ModelInfo(name="b", context_window=8192, input_price=1.0),
            ModelInfo(name="c", context_window=128_000, input_price=5.0),
        ]
    )
    overflowing = FlakyChat(errors=[context_overflow(), context_overflow()])
    unused = FlakyChat(reply="never")
    routes = [
        Route(name="cheap", runnable=overflowing, model="a"),
        Route(name="mid", runnable=unused, model="b"),
        Route(name="large", runnable=fake("from large"), model="c"),
    ]
    for out in (
        make_router(routes=routes, registry=registry).invoke("hi"),
        await make_router(routes=routes, registry=registry).ainvoke("hi"),
    ):
        assert out.content == "from large"
        meta = out.response_metadata["oscar_route"]
        assert meta["attempts"] == [["cheap", "context_length"], ["large", "ok"]]
    assert unused.calls == 0 and overflowing.calls == 2  # never retried


def test_failover_off_makes_one_call_and_raises_its_error():
    flaky = FlakyChat(errors=[APIError(503, "unavailable")])
    routes = [
        Route(name="cheap-small", runnable=flaky, model="cheap-small"),
        Route(name="mid", runnable=fake("from mid"), model="mid"),
    ]
    with pytest.raises(APIError):
        make_router(routes=routes, failover=False).invoke("hi")
    assert flaky.calls == 1


@pytest.mark.parametrize("use_async", [False, True])
async def test_route_runs_are_children_of_the_router_run(use_async):
    rec = Recorder()
    router = make_router()
    config = {"callbacks": [rec], "configurable": {"route_tags": []}}
    if use_async:
        await router.ainvoke("hi", config)
    else:
        router.invoke("hi", config)
    (root, parent, _tags), (child, child_parent, child_tags) = rec.starts
    assert parent is None and child_parent == root and child != root
    assert "route:cheap-small" in child_tags
