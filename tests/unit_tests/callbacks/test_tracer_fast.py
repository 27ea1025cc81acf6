"""The tracer's direct span path exports what ``Tracer.start_span`` would have exported."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda, RunnableParallel
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.util.types import Attributes

from oscar_langchain.callbacks import OscarTracer, _otel_fast
from oscar_langchain.callbacks._otel_fast import FastSpan, FastSpans, sdk_supported
from tests.unit_tests.callbacks.fakes import FakeChat, otel, tree

# The direct path exists only for the SDK versions it was checked against; on any other
# installed SDK these tests have nothing to compare, and the tracer's own tests (tree,
# GenAI attributes) exercise start_span instead.
needs_fast = pytest.mark.skipif(
    _otel_fast._INTERNALS is None, reason="installed opentelemetry-sdk is outside TESTED_SDK"
)


class Collect(SpanProcessor):
    """Keeps every ended span, sampled or not (on_start stays the base no-op)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


class OnStart(Collect):
    """A processor that acts on on_start: the tracer must use start_span for it."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[str] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started.append(span.name)
        span.set_attribute("seen.on_start", True)


def fail(x: int) -> int:
    raise ConnectionError("backend down")


def workload() -> Any:
    """Nested chain, parallel branches, a fallback with an error, and a chat model."""
    parallel = RunnableParallel(a=RunnableLambda(lambda x: x + 1), b=RunnableLambda(fail))
    return (
        RunnableLambda(lambda x: x * 2, name="double")
        | RunnableLambda(fail).with_fallbacks([RunnableLambda(lambda x: x - 1, name="dec")])
        | parallel.with_fallbacks([RunnableLambda(lambda x: {"a": x}, name="safe")])
        | RunnableLambda(lambda d: f"value {d['a']}", name="fmt")
        | FakeChat()
    )


def summary(spans: Sequence[ReadableSpan]) -> list[Any]:
    """Everything an exporter reads, minus ids and times."""
    out = []
    for s in sorted(spans, key=lambda s: (s.name, s.start_time or 0)):
        attrs = dict(s.attributes or {})
        attrs.pop("seen.on_start", None)
        out.append(
            (
                s.name,
                s.kind,
                s.status.status_code,
                sorted(attrs.items()),
                [(e.name, sorted((e.attributes or {}).keys())) for e in s.events],
                s.resource is not None,
                s.instrumentation_scope.name if s.instrumentation_scope else None,
            )
        )
    return out


@needs_fast
def test_fast_and_start_span_paths_export_the_same() -> None:
    fast_provider, fast_exporter = otel()
    slow_provider = TracerProvider()
    slow = OnStart()
    slow_provider.add_span_processor(slow)
    fast_tracer, slow_tracer = OscarTracer(fast_provider), OscarTracer(slow_provider)
    assert fast_tracer._fast is not None and slow_tracer._fast is None
    for tracer in (fast_tracer, slow_tracer):
        workload().invoke(3, {"callbacks": [tracer]})
    fast_spans = fast_exporter.get_finished_spans()
    assert tree(fast_spans) == tree(slow.spans)
    assert summary(fast_spans) == summary(slow.spans)
    assert len(slow.started) == len(slow.spans)
    assert all(isinstance(s, FastSpan) or s.events or s.attributes for s in fast_spans)
    assert len({s.context.trace_id for s in fast_spans}) == 1
    assert all(s.end_time >= s.start_time for s in fast_spans)  # type: ignore[operator]


@needs_fast
def test_processor_added_later_switches_to_start_span() -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider)
    chain = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
    chain.invoke(1, {"callbacks": [tracer]})
    assert all(isinstance(s, FastSpan) for s in exporter.get_finished_spans())
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert tracer._fast is not None and tracer._fast.still_valid  # still quiet processors
    late = OnStart()
    provider.add_span_processor(late)
    assert not tracer._fast.still_valid
    chain.invoke(1, {"callbacks": [tracer]})
    assert late.started == ["RunnableSequence", "RunnableLambda", "RunnableLambda"]
    assert tree(late.spans) == [
        ("RunnableSequence", [("RunnableLambda", []), ("RunnableLambda", [])])
    ]


class Tagging(Sampler):
    """Samples everything and tags each span, as some samplers do."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE, {"sampler.tag": name})

    def get_description(self) -> str:
        return "Tagging"


class RecordOnly(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


def run_with(sampler: Sampler) -> list[ReadableSpan]:
    provider = TracerProvider(sampler=sampler)
    collect = Collect()
    provider.add_span_processor(collect)
    tracer = OscarTracer(provider)
    assert tracer._fast is not None
    (RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)).invoke(
        1, {"callbacks": [tracer]}
    )
    return collect.spans


@needs_fast
def test_samplers_are_honoured() -> None:
    assert run_with(ParentBased(ALWAYS_OFF)) == []
    tagged = run_with(Tagging())
    assert sorted(dict(s.attributes or {})["sampler.tag"] for s in tagged) == [
        "RunnableLambda",
        "RunnableLambda",
        "RunnableSequence",
    ]
    record_only = run_with(RecordOnly())
    assert len(record_only) == 3
    assert not any(s.context.trace_flags.sampled for s in record_only)
    assert len(run_with(ALWAYS_ON)) == 3


@needs_fast
def test_root_joins_a_remote_parent() -> None:
    provider, exporter = otel()
    remote = trace.SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=trace.TraceFlags(1))
    with trace.use_span(trace.NonRecordingSpan(remote)):
        RunnableLambda(lambda x: x).invoke(1, {"callbacks": [OscarTracer(provider)]})
    [span] = exporter.get_finished_spans()
    assert span.context.trace_id == 0xABC
    assert span.parent is not None and span.parent.span_id == 0xDEF


@needs_fast
def test_fast_span_records_every_change_for_the_sdk() -> None:
    provider, exporter = otel()
    fast = FastSpans.create(provider, provider.get_tracer("t"))
    assert fast is not None
    parent = fast.start("parent", None)
    span = fast.start("child", parent, SpanKind.CLIENT, {"a": 1})
    assert span.is_recording() and span.get_span_context().trace_id == parent.context.trace_id
    span.update_name("renamed")
    span.add_link(parent.get_span_context(), {"why": "test"})
    span.record_exception(ValueError("bad"))
    span.set_status(StatusCode.ERROR, "bad")
    span.end()
    span.end()  # a second end is ignored, as the SDK's
    span.set_attribute("late", True)  # after the end: ignored
    parent.end()
    assert not span.is_recording()
    child, root = exporter.get_finished_spans()
    assert (child.name, child.kind, child.status.status_code) == (
        "renamed",
        SpanKind.CLIENT,
        StatusCode.ERROR,
    )
    assert dict(child.attributes or {}) == {"a": 1}
    assert [e.name for e in child.events] == ["exception"]
    assert len(child.links) == 1
    assert child.parent is not None and child.parent.span_id == root.context.span_id
    assert root.parent is None


@pytest.mark.parametrize("make", [lambda: trace.NoOpTracerProvider(), lambda: object()])
def test_other_providers_have_no_fast_path(make: Any) -> None:
    provider = make()
    assert FastSpans.create(provider, getattr(provider, "get_tracer", lambda n: None)("t")) is None


@pytest.mark.parametrize(
    ("version", "supported"),
    [("1.42.0", True), ("1.45.2", True), ("1.41.9", False), ("1.46.0", False), ("x.y", False)],
)
def test_only_tested_sdk_versions_get_the_direct_path(version: str, supported: bool) -> None:
    assert sdk_supported(version) is supported


def test_untested_sdk_uses_start_span(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_otel_fast, "_SDK_VERSION", "1.30.0")
    assert _otel_fast._sdk_internals() is None
    monkeypatch.setattr(_otel_fast, "_INTERNALS", None)
    provider, exporter = otel()
    tracer = OscarTracer(provider)
    assert tracer._fast is None
    (RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)).invoke(
        1, {"callbacks": [tracer]}
    )
    spans = exporter.get_finished_spans()
    assert not any(isinstance(s, FastSpan) for s in spans)
    assert tree(spans) == [("RunnableSequence", [("RunnableLambda", []), ("RunnableLambda", [])])]


@needs_fast
def test_default_root_decision_matches_start_span() -> None:
    provider, _ = otel()
    tracer = provider.get_tracer("t")
    fast = FastSpans.create(provider, tracer)
    assert fast is not None and fast._roots_sampled
    ours = fast.start("root", None, attributes={"a": 1})
    theirs = tracer.start_span("root", attributes={"a": 1})
    assert ours.parent is None and theirs.parent is None  # type: ignore[attr-defined]
    ours_ctx, theirs_ctx = ours.get_span_context(), theirs.get_span_context()
    assert ours_ctx.trace_flags == theirs_ctx.trace_flags
    assert ours_ctx.trace_state == theirs_ctx.trace_state
    assert ours_ctx.is_valid and not ours_ctx.is_remote
    assert ours.start_attributes == {"a": 1}
    theirs.end()


class Calls(SpanExporter):
    """Records each export call's span names; optionally raises."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls.append([s.name for s in spans])
        if self.fail:
            raise ConnectionError("collector down")
        return SpanExportResult.SUCCESS


def _traced(processor: SpanProcessor) -> OscarTracer:
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = OscarTracer(provider)
    workload().invoke(3, {"callbacks": [tracer]})
    return tracer


@needs_fast
def test_a_simple_processor_gets_a_trace_in_one_export() -> None:
    exporter = Calls()
    tracer = _traced(SimpleSpanProcessor(exporter))
    [names] = exporter.calls  # the whole trace, in the order the runs ended
    assert len(names) == 12 and names[-1] == "RunnableSequence"
    ordered = InMemorySpanExporter()
    for span in _with_each_on_end():
        ordered.export((span,))
    assert names == [s.name for s in ordered.get_finished_spans()]
    assert tracer.internal_errors == 0


def _with_each_on_end() -> list[ReadableSpan]:
    """The same workload through a processor that takes spans one by one."""
    collect = Collect()
    _traced(collect)
    return collect.spans


class Counting:
    """Stands in for the SDK's processor self-metrics (enabled: they count every span)."""

    def __init__(self) -> None:
        self.finished = 0

    def finish_items(self, count: int, error: Exception | None = None) -> None:
        self.finished += count


@needs_fast
def test_processor_self_metrics_keep_one_export_per_span(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = Calls()
    processor = SimpleSpanProcessor(exporter)
    monkeypatch.setattr(processor, "_metrics", Counting())  # not the no-op: counts per span
    _traced(processor)
    assert len(exporter.calls) == 12 and all(len(c) == 1 for c in exporter.calls)


@needs_fast
def test_a_failing_export_is_logged_as_the_sdk_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    exporter = Calls(fail=True)
    with caplog.at_level(logging.ERROR, logger=SimpleSpanProcessor.__module__):
        tracer = _traced(SimpleSpanProcessor(exporter))
    assert len(exporter.calls) == 1
    assert "Exception while exporting Span." in caplog.text
    assert tracer.internal_errors == 0  # the exporter's failure, not the tracer's


@needs_fast
def test_a_shut_down_or_unsampling_processor_exports_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = Calls()
    processor = SimpleSpanProcessor(exporter)
    processor._shutdown = True  # what shutdown() sets (SDK >= 1.45), without the exporter's
    with caplog.at_level(logging.WARNING, logger=SimpleSpanProcessor.__module__):
        _traced(processor)
    assert exporter.calls == [] and "already shutdown" in caplog.text
    provider = TracerProvider(sampler=RecordOnly())
    record_only = Calls()
    provider.add_span_processor(SimpleSpanProcessor(record_only))
    RunnableLambda(lambda x: x).invoke(1, {"callbacks": [OscarTracer(provider)]})
    assert record_only.calls == []  # recorded, not sampled: not exported
