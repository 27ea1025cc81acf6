"""Performance stats: quantiles, per-model series, TTFT, cost, bounds, decorators."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.runnables import RunnableLambda

from oscar_langchain.callbacks import (
    ErrorAggregator,
    PerformanceCallbackHandler,
    PerformanceStats,
    _cost,
    default_stats,
    trace_block,
    trace_performance,
)
from oscar_langchain.callbacks._sketch import QuantileSketch
from oscar_langchain.errors import ConfigurationError, UnknownModelError
from tests.unit_tests.callbacks.fakes import FakeChat


class FakeClock:
    def __init__(self, step: float = 0.0) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_sketch_quantiles_within_relative_accuracy() -> None:
    sketch = QuantileSketch(relative_accuracy=0.01)
    values = [i / 1000 for i in range(1, 10_001)]
    for v in values:
        sketch.add(v)
    for q in (0.5, 0.95, 0.99):
        exact = values[math.floor(q * (len(values) - 1))]
        assert abs(sketch.quantile(q) - exact) <= 0.011 * exact
    assert sketch.mean == pytest.approx(sum(values) / len(values))


def test_sketch_zero_empty_and_validation() -> None:
    sketch = QuantileSketch()
    assert sketch.quantile(0.5) == 0.0 and sketch.mean == 0.0
    sketch.add(0.0)
    sketch.add(1.0)
    assert sketch.quantile(0.0) == 0.0
    assert sketch.quantile(1.0) == pytest.approx(1.0, rel=0.011)
    with pytest.raises(ConfigurationError, match="relative_accuracy"):
        QuantileSketch(relative_accuracy=1.5)
    with pytest.raises(ConfigurationError, match="max_bins"):
        QuantileSketch(max_bins=1)
    with pytest.raises(ConfigurationError, match="q"):
        sketch.quantile(2)


def test_memory_is_bounded_by_caps() -> None:
    """A million runs' worth of distinct names and values stays within the caps."""
    stats = PerformanceStats(clock=FakeClock(0.001), max_series=8, max_bins=16)
    for i in range(20_000):
        stats.record(f"component-{i}", 10.0 ** ((i % 200) / 20 - 5), model=f"model-{i}")
    assert stats.series_count == 16  # 8 components (incl. "(other)") + 8 models
    snap = stats.snapshot()
    assert snap.components["(other)"].count == 20_000 - 7
    assert sum(s.count for s in snap.components.values()) == 20_000
    sketch = stats._components["(other)"].latency
    assert sketch.bins <= 16
    assert snap.components["(other)"].p99 > snap.components["(other)"].p50


def test_record_snapshot_report_reset() -> None:
    stats = PerformanceStats(clock=FakeClock(1.0))
    stats.record("llm", 0.2, model="gpt-4o", ttft=0.05, input_tokens=10, output_tokens=5, cost=0.01)
    stats.record("llm", 0.4, model="gpt-4o", error=True)
    stats.record("parse", 0.001)
    snap = stats.snapshot()
    llm = snap.components["llm"]
    assert (llm.count, llm.errors, llm.input_tokens, llm.output_tokens) == (2, 1, 10, 5)
    assert llm.error_rate == 0.5
    assert llm.cost == pytest.approx(0.01)
    assert llm.ttft_p50 == pytest.approx(0.05, rel=0.02)
    assert llm.p50 == pytest.approx(0.2, rel=0.02)
    assert llm.throughput > 0
    assert snap.components["parse"].cost is None and snap.components["parse"].ttft_p50 is None
    assert snap.models["gpt-4o"].count == 2
    assert snap.to_dict()["models"]["gpt-4o"]["count"] == 2
    report = stats.report()
    assert "[components]" in report and "[models]" in report and "gpt-4o" in report
    stats.reset()
    assert stats.snapshot().components == {}
    with pytest.raises(ConfigurationError, match="max_series"):
        PerformanceStats(max_series=0)


def test_handler_times_every_run() -> None:
    stats = PerformanceStats()
    handler = PerformanceCallbackHandler(stats)
    chain = RunnableLambda(lambda x: x + 1).with_config(run_name="inc") | RunnableLambda(
        lambda x: 1 // x
    ).with_config(run_name="inv")
    assert chain.batch([1, 2, 3], {"callbacks": [handler]}) == [0, 0, 0]
    with pytest.raises(ZeroDivisionError):
        chain.invoke(-1, {"callbacks": [handler]})
    snap = stats.snapshot()
    assert snap.components["inc"].count == 4
    assert (snap.components["inv"].count, snap.components["inv"].errors) == (4, 1)
    assert snap.components["RunnableSequence"].errors == 1
    assert handler.open_runs == 0


def fake_estimator(model: str, input_tokens: int, output_tokens: int) -> float:
    if model != "gpt-4o-mini-2024" and model != "gpt-4o-mini":
        raise UnknownModelError(model)
    return input_tokens * 0.15e-6 + output_tokens * 0.6e-6


@pytest.fixture
def estimator(monkeypatch: pytest.MonkeyPatch) -> Callable[..., float]:
    monkeypatch.setattr(_cost, "_estimate", fake_estimator)
    monkeypatch.setattr(_cost, "_loaded", True)
    monkeypatch.setattr(_cost, "_unknown", set())
    return fake_estimator


def test_model_runs_give_tokens_cost_and_ttft(estimator: Callable[..., float]) -> None:
    stats = PerformanceStats()
    handler = PerformanceCallbackHandler(stats)
    FakeChat().invoke("hi", {"callbacks": [handler]})
    list(FakeChat(reply="a b c").stream("hi", {"callbacks": [handler]}))
    FakeChat(model_name="unknown-model").invoke("hi", {"callbacks": [handler]})
    FakeChat(model_name="unknown-model").invoke("hi", {"callbacks": [handler]})
    snap = stats.snapshot()
    model = snap.models["gpt-4o-mini"]
    assert (model.count, model.input_tokens, model.output_tokens) == (2, 22, 6)
    assert model.cost == pytest.approx(2 * (11 * 0.15e-6 + 3 * 0.6e-6))
    assert model.ttft_p50 is not None
    assert snap.models["unknown-model"].cost is None
    assert _cost._unknown == {"unknown-model"}


def test_cost_is_none_without_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cost, "_estimate", None)
    monkeypatch.setattr(_cost, "_loaded", True)
    assert _cost.run_cost("gpt-4o", 1, 1) is None
    assert _cost.run_cost("gpt-4o", None, None) is None


def test_cost_loads_registry_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cost, "_estimate", None)
    monkeypatch.setattr(_cost, "_loaded", False)
    cost = _cost.run_cost("some-model-nobody-knows", 1, 1)
    assert cost is None or isinstance(cost, float)
    assert _cost._loaded


def test_handler_internal_failure_never_breaks_the_chain() -> None:
    def broken_clock() -> float:
        raise OSError("clock gone")

    handler = PerformanceCallbackHandler(PerformanceStats(clock=broken_clock))
    assert RunnableLambda(lambda x: x).invoke(5, {"callbacks": [handler]}) == 5
    assert handler.internal_errors == 1  # the start failed; the end found no run


def test_open_runs_are_bounded() -> None:
    handler = PerformanceCallbackHandler(PerformanceStats(), max_open_runs=5)
    for _ in range(50):
        handler.on_chain_start(None, {}, run_id=uuid4(), name="never-ends")
    assert handler.open_runs == 5
    with pytest.raises(ConfigurationError, match="max_open_runs"):
        PerformanceCallbackHandler(max_open_runs=0)


def test_trace_performance_sync_and_async() -> None:
    clock = FakeClock(0.5)
    stats = PerformanceStats(clock=clock)
    errors = ErrorAggregator(clock=clock)

    @trace_performance(stats=stats, errors=errors)
    def work(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x

    @trace_performance("async_work", stats=stats, model="m")
    async def async_work(x: int) -> int:
        return x

    assert work(1) == 1
    with pytest.raises(ValueError):
        work(-1)
    assert asyncio.run(async_work(2)) == 2
    snap = stats.snapshot()
    name = "test_trace_performance_sync_and_async.<locals>.work"
    assert (snap.components[name].count, snap.components[name].errors) == (2, 1)
    assert snap.components[name].p50 == pytest.approx(0.5, rel=0.02)
    assert snap.models["m"].count == 1
    assert [g.error_type for g in errors.groups()] == ["ValueError"]
    assert async_work.__name__ == "async_work"


async def test_trace_block_async_and_first_token() -> None:
    stats = PerformanceStats(clock=FakeClock(0.25))
    async with trace_block("stream", stats=stats, model="gpt-4o-mini") as block:
        block.first_token()
        block.first_token()
        block.add_tokens(input_tokens=3, output_tokens=4)
    series = stats.snapshot().components["stream"]
    assert series.ttft_p50 == pytest.approx(0.25, rel=0.02)
    assert (series.input_tokens, series.output_tokens) == (3, 4)


def test_default_stats_is_shared() -> None:
    assert default_stats() is default_stats()
    assert PerformanceCallbackHandler().stats is default_stats()
    before = default_stats().snapshot().components.get("shared-block")
    with trace_block("shared-block"):
        pass
    after = default_stats().snapshot().components["shared-block"]
    assert after.count == (before.count if before else 0) + 1


def test_stats_thread_safe_under_sync_batch() -> None:
    stats = PerformanceStats()
    handler = PerformanceCallbackHandler(stats)
    runnable = RunnableLambda(lambda x: x).with_config(run_name="id")
    runnable.batch(list(range(400)), {"callbacks": [handler], "max_concurrency": 8})
    assert stats.snapshot().components["id"].count == 400


def test_trace_block_recording_failure_never_breaks_the_block(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenStats(PerformanceStats):
        def record(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("stats gone")

    with trace_block("x", stats=BrokenStats()):
        value = 1
    assert value == 1
    with pytest.raises(KeyError), trace_block("x", stats=BrokenStats()):
        raise KeyError("the block's own error wins")
    assert "could not record" in caplog.text


def test_real_registry_cost_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cost, "_estimate", None)
    monkeypatch.setattr(_cost, "_loaded", False)
    monkeypatch.setattr(_cost, "_unknown", set())
    models = pytest.importorskip("oscar_langchain.models")
    name = models.default_registry().names()[0]
    assert _cost.run_cost(name, 1000, 1000) == pytest.approx(models.estimate_cost(name, 1000, 1000))
    assert _cost.run_cost("no-such-model-xyz", 1, 1) is None
