"""oscar_callbacks(): all three handlers through one combined handler."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda

from oscar_langchain.callbacks import (
    CombinedHandler,
    ErrorAggregator,
    HealthThresholds,
    PerformanceStats,
    oscar_callbacks,
)
from oscar_langchain.errors import ConfigurationError
from tests.unit_tests.callbacks.fakes import FakeChat, otel, tree
from tests.unit_tests.callbacks.test_tracer_genai import ExplodingProvider


def boom(x: int) -> int:
    raise ValueError("boom")


def test_all_three_observe_every_run() -> None:
    provider, exporter = otel()
    cb = oscar_callbacks(tracer_provider=provider, stats=PerformanceStats())
    chain = RunnableLambda(lambda x: str(x)) | FakeChat()
    chain.invoke(1, {"callbacks": cb.handlers})
    with pytest.raises(ValueError):
        RunnableLambda(boom).invoke(1, {"callbacks": cb.handlers})
    assert tree(exporter.get_finished_spans()) == [
        ("RunnableSequence", [("RunnableLambda", []), ("chat gpt-4o-mini", [])]),
        ("boom", []),
    ]
    snap = cb.stats.snapshot()
    assert snap.models["gpt-4o-mini"].output_tokens == 3
    assert snap.components["boom"].errors == 1
    assert [(g.component, g.count) for g in cb.errors.groups()] == [("boom", 1)]
    assert cb.internal_errors == 0
    assert len(cb.handlers) == 1 and isinstance(cb.handlers[0], CombinedHandler)


async def test_installed_observes_runs_without_config() -> None:
    provider, exporter = otel()
    cb = oscar_callbacks(
        tracer_provider=provider,
        stats=PerformanceStats(),
        thresholds=HealthThresholds(min_calls=1),
    )
    chain = RunnableLambda(lambda x: x * 2).with_config(run_name="double")
    with cb.installed():
        assert chain.invoke(2) == 4
        assert await chain.ainvoke(3) == 6
    assert chain.invoke(4) == 8  # no longer observed
    assert cb.stats.snapshot().components["double"].count == 2
    assert len(exporter.get_finished_spans()) == 2
    assert cb.errors.health() == {"double": cb.errors.health()["double"]}


def test_a_failing_part_does_not_stop_the_others() -> None:
    cb = oscar_callbacks(
        tracer_provider=ExplodingProvider(),  # type: ignore[arg-type]
        stats=PerformanceStats(),
        aggregator=ErrorAggregator(),
    )
    assert (
        RunnableLambda(lambda x: x).with_config(run_name="id").invoke(1, {"callbacks": cb.handlers})
        == 1
    )
    assert cb.tracer.internal_errors == 1
    assert cb.internal_errors == 1
    assert cb.stats.snapshot().components["id"].count == 1


def test_combined_forwards_tokens_and_annotations() -> None:
    from tests.unit_tests.callbacks.test_tracer_genai import Router

    provider, exporter = otel()
    cb = oscar_callbacks(tracer_provider=provider, stats=PerformanceStats())
    list(FakeChat(reply="a b").stream("hi", {"callbacks": cb.handlers}))
    Router().invoke(1, {"callbacks": cb.handlers})
    assert cb.stats.snapshot().models["gpt-4o-mini"].ttft_p50 is not None
    attrs = [dict(s.attributes or {}) for s in exporter.get_finished_spans()]
    assert any(a.get("oscar.route") == "fast" for a in attrs)


class Broken:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def _failed(self, where: str, exc: Exception) -> None:
        self.failed.append(where)

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any) -> None:
            raise RuntimeError(name)

        return fail


def test_combined_isolates_every_hook() -> None:
    broken = Broken()
    combined = CombinedHandler([broken])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        RunnableLambda(boom).invoke(1, {"callbacks": [combined]})
    list(FakeChat().stream("x", {"callbacks": [combined]}))
    from tests.unit_tests.callbacks.test_tracer_genai import Router

    Router().invoke(1, {"callbacks": [combined]})
    assert "on_llm_new_token" in broken.failed
    assert [w for w in broken.failed if w != "on_llm_new_token"] == [
        *("on_run_start", "on_run_error"),
        *("on_model_start", "on_llm_end"),
        *("on_run_start", "on_custom_event", "on_run_end"),
    ]
    with pytest.raises(ConfigurationError, match="parts"):
        CombinedHandler([])


def test_combined_handler_reports_its_parts_open_runs() -> None:
    from uuid import uuid4

    from opentelemetry.sdk.trace import TracerProvider

    from oscar_langchain.callbacks import PerformanceStats, oscar_callbacks

    cb = oscar_callbacks(tracer_provider=TracerProvider(), stats=PerformanceStats())
    run = uuid4()
    cb.handler.on_chain_start(None, {}, run_id=run, name="open")
    assert cb.handler.open_runs == cb.tracer.open_runs == 1
    cb.handler.on_chain_end({}, run_id=run)
    assert cb.handler.open_runs == 0
