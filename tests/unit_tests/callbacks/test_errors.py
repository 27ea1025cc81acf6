"""Error aggregation: grouping, exact counts under concurrency, windows, health, bounds."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
from langchain_core.runnables import RunnableLambda

from oscar_langchain.callbacks import (
    ErrorAggregator,
    ErrorCallbackHandler,
    ErrorGroup,
    Health,
    HealthChange,
    HealthThresholds,
)
from oscar_langchain.errors import ConfigurationError, ErrorClassification, ErrorKind
from tests.unit_tests.callbacks.fakes import SECRET, FakeChat


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RateLimitError(Exception):
    status_code = 429


def key(g: ErrorGroup) -> tuple[str, str, str | None, str]:
    return (g.component, g.error_type, g.model, g.kind)


def test_groups_by_component_type_model_and_kind() -> None:
    clock = Clock()
    agg = ErrorAggregator(clock=clock)
    agg.record_error("llm", TimeoutError("t1"), model="a")
    clock.now += 5
    agg.record_error("llm", TimeoutError("t2"), model="a")
    agg.record_error("llm", TimeoutError("t3"), model="b")
    agg.record_error("llm", RateLimitError("slow down"), model="a")
    agg.record_error("parser", ValueError("bad json"))
    groups = {key(g): g for g in agg.groups()}
    assert set(groups) == {
        ("llm", "TimeoutError", "a", "timeout"),
        ("llm", "TimeoutError", "b", "timeout"),
        ("llm", "RateLimitError", "a", "rate_limit"),
        ("parser", "ValueError", None, "unknown"),
    }
    timeouts = groups[("llm", "TimeoutError", "a", "timeout")]
    assert (timeouts.count, timeouts.first_seen, timeouts.last_seen) == (2, 1000.0, 1005.0)
    assert timeouts.samples == ("t1", "t2")
    assert agg.groups()[0] == timeouts  # most frequent first


def test_samples_bounded_and_redacted() -> None:
    agg = ErrorAggregator(max_samples=3, sample_chars=40)
    for i in range(10):
        agg.record_error("llm", PermissionError(f"call {i} api_key={SECRET} " + "x" * 80))
    [group] = agg.groups()
    assert group.count == 10 and len(group.samples) == 3
    assert all(SECRET not in s and len(s) <= 40 for s in group.samples)
    assert group.samples[-1].startswith("call 9 api_key=[REDACTED]")


def test_sliding_window_rate_and_health() -> None:
    clock = Clock()
    thresholds = HealthThresholds(degraded=0.2, failing=0.5, min_calls=4, window=60, buckets=6)
    agg = ErrorAggregator(thresholds, clock=clock)
    changes: list[HealthChange] = []
    agg.on_health_change(changes.append)
    for _ in range(8):
        agg.record_success("llm")
    agg.record_error("llm", TimeoutError())
    agg.record_error("llm", TimeoutError())
    assert agg.error_rate("llm") == pytest.approx(0.2)
    assert agg.health() == {"llm": Health.DEGRADED}
    for _ in range(10):
        agg.record_error("llm", TimeoutError())
    assert agg.health()["llm"] is Health.FAILING
    assert [(c.old, c.new) for c in changes] == [
        (Health.HEALTHY, Health.DEGRADED),
        (Health.DEGRADED, Health.FAILING),
    ]
    clock.now += 61  # the window slides past every call
    assert agg.error_rate("llm") == 0.0
    assert agg.health()["llm"] is Health.HEALTHY
    agg.record_success("llm")  # the next event notices the change
    assert changes[-1].new is Health.HEALTHY
    assert agg.error_rate("unknown") == 0.0


def test_listeners_for_new_groups_and_failing_listener_is_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agg = ErrorAggregator()
    seen: list[ErrorGroup] = []

    def broken(_: ErrorGroup) -> None:
        raise RuntimeError("listener bug")

    agg.on_new_group(broken)
    unsubscribe = agg.on_new_group(seen.append)
    agg.record_error("a", ValueError("x"))
    agg.record_error("a", ValueError("y"))
    agg.record_error("b", ValueError("z"))
    assert [(g.component, g.count) for g in seen] == [("a", 1), ("b", 1)]
    assert "listener bug" in caplog.text
    unsubscribe()
    unsubscribe()
    agg.record_error("c", ValueError("w"))
    assert len(seen) == 2


def test_groups_components_and_samples_are_bounded() -> None:
    agg = ErrorAggregator(max_groups=10, max_components=5, max_samples=2)
    for i in range(5000):
        agg.record_error(f"component-{i}", ValueError(f"message {i}"), model=f"m{i % 7}")
    assert agg.group_count == 10
    assert len(agg.health()) == 5
    other = next(g for g in agg.groups() if g.component == "(other)")
    assert other.count == 5000 - 9 and len(other.samples) == 2
    assert sum(g.count for g in agg.groups()) == 5000


def test_thresholds_validate() -> None:
    with pytest.raises(ConfigurationError, match="degraded"):
        HealthThresholds(degraded=0)
    with pytest.raises(ConfigurationError, match="failing"):
        HealthThresholds(degraded=0.5, failing=0.4)
    with pytest.raises(ConfigurationError, match="min_calls"):
        HealthThresholds(min_calls=0)
    with pytest.raises(ConfigurationError, match="window"):
        HealthThresholds(window=0)
    with pytest.raises(ConfigurationError, match="buckets"):
        HealthThresholds(buckets=0)
    with pytest.raises(ConfigurationError, match="max_groups"):
        ErrorAggregator(max_groups=0)


def test_summary_and_reset() -> None:
    agg = ErrorAggregator()
    assert "no errors" in agg.summary()
    agg.record_error("llm", TimeoutError("slow"), model="gpt-4o")
    text = agg.summary()
    assert "llm TimeoutError [timeout] model=gpt-4o" in text and "e.g. slow" in text
    agg.reset()
    assert agg.groups() == [] and agg.health() == {}


def step(x: int) -> int:
    if x % 3 == 0:
        raise ValueError("multiple of three")
    if x % 3 == 1:
        raise TimeoutError("timed out")
    return x


async def astep(x: int) -> int:
    await asyncio.sleep(0)
    return step(x)


async def apre(x: int) -> int:
    await asyncio.sleep(0)
    return x


async def test_exact_counts_under_thousands_of_concurrent_async_runs() -> None:
    handler = ErrorCallbackHandler(ErrorAggregator())
    n = 2001
    results = await asyncio.gather(
        *(RunnableLambda(astep).ainvoke(i, {"callbacks": [handler]}) for i in range(n)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, ValueError) for r in results) == n // 3
    groups = {key(g): g.count for g in handler.aggregator.groups()}
    assert groups == {
        ("astep", "ValueError", None, "unknown"): n // 3,
        ("astep", "TimeoutError", None, "timeout"): n // 3,
    }
    assert handler.open_runs == 0 and handler.internal_errors == 0
    assert handler.aggregator.error_rate("astep") == pytest.approx(2 / 3)


async def test_parent_runs_count_propagated_errors() -> None:
    handler = ErrorCallbackHandler(ErrorAggregator())
    chain = RunnableLambda(apre) | RunnableLambda(astep)
    n = 300
    await asyncio.gather(
        *(chain.ainvoke(i, {"callbacks": [handler]}) for i in range(n)), return_exceptions=True
    )
    groups = {key(g): g for g in handler.aggregator.groups()}
    assert groups[("astep", "ValueError", None, "unknown")].propagated == 0
    seq = groups[("RunnableSequence", "ValueError", None, "unknown")]
    assert (seq.count, seq.propagated) == (n // 3, n // 3)
    assert len(groups) == 4
    assert "at origin" in handler.aggregator.summary()


def test_exact_counts_under_threaded_batch() -> None:
    handler = ErrorCallbackHandler(ErrorAggregator())
    results = RunnableLambda(step).batch(
        list(range(600)), {"callbacks": [handler], "max_concurrency": 8}, return_exceptions=True
    )
    assert len(results) == 600
    counts = {g.error_type: g.count for g in handler.aggregator.groups()}
    assert counts == {"ValueError": 200, "TimeoutError": 200}


def test_model_errors_carry_the_model() -> None:
    handler = ErrorCallbackHandler()
    with pytest.raises(RateLimitError):
        FakeChat(fail=RateLimitError("429")).invoke("hi", {"callbacks": [handler]})
    FakeChat().invoke("hi", {"callbacks": [handler]})
    [group] = handler.aggregator.groups()
    assert key(group) == ("FakeChat", "RateLimitError", "gpt-4o-mini", "rate_limit")


def test_raising_classifier_never_breaks_the_chain() -> None:
    def classifier(exc: BaseException) -> ErrorClassification:
        raise RuntimeError("classifier bug")

    handler = ErrorCallbackHandler(ErrorAggregator(classifier=classifier))
    with pytest.raises(ValueError, match="multiple of three"):
        RunnableLambda(step).invoke(3, {"callbacks": [handler]})
    assert RunnableLambda(step).invoke(2, {"callbacks": [handler]}) == 2
    assert handler.internal_errors == 1


def test_custom_classifier_kind() -> None:
    agg = ErrorAggregator(classifier=lambda e: ErrorClassification(ErrorKind.SERVER))
    agg.record_error("x", ValueError())
    assert agg.groups()[0].kind == "server"


def test_open_runs_bounded() -> None:
    handler = ErrorCallbackHandler(max_open_runs=3)
    for _ in range(20):
        handler.on_chain_start(None, {}, run_id=uuid4(), name="never-ends")
    assert handler.open_runs == 3
