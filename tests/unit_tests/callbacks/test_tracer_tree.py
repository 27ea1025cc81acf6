"""The tracer's span tree matches the LangChain run tree exactly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda, RunnableParallel
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from oscar_langchain.callbacks import OscarTracer, _otel_fast
from oscar_langchain.errors import ConfigurationError
from tests.unit_tests.callbacks.fakes import otel, tree


def add_one(x: int) -> int:
    return x + 1


def double(x: int) -> int:
    return x * 2


def minus_one(x: int) -> int:
    return x - 1


async def aadd_one(x: int) -> int:
    return x + 1


async def adouble(x: int) -> int:
    return x * 2


def chain():  # type: ignore[no-untyped-def]
    return RunnableLambda(add_one) | RunnableLambda(double) | RunnableLambda(minus_one)


SEQ = ("RunnableSequence", [("add_one", []), ("double", []), ("minus_one", [])])

# Spans wait for their root only on the SDK's direct path (opentelemetry-sdk in TESTED_SDK);
# elsewhere they start and end with their runs.
deferred = pytest.mark.skipif(
    _otel_fast._INTERNALS is None, reason="installed opentelemetry-sdk is outside TESTED_SDK"
)


def test_invoke_tree() -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider)
    assert chain().invoke(1, {"callbacks": [tracer]}) == 3
    spans = exporter.get_finished_spans()
    assert tree(spans) == [SEQ]
    assert len({s.context.trace_id for s in spans}) == 1
    assert tracer.open_runs == 0 and tracer.internal_errors == 0


async def test_ainvoke_tree() -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider)
    async_chain = RunnableLambda(aadd_one) | RunnableLambda(adouble)
    assert await async_chain.ainvoke(1, {"callbacks": [tracer]}) == 4
    assert tree(exporter.get_finished_spans()) == [
        ("RunnableSequence", [("aadd_one", []), ("adouble", [])])
    ]
    # sync functions under ainvoke run in a thread pool: still nested by run id
    exporter.clear()
    assert await chain().ainvoke(1, {"callbacks": [tracer]}) == 3
    assert tree(exporter.get_finished_spans()) == [SEQ]


def test_batch_gives_one_tree_per_input() -> None:
    provider, exporter = otel()
    assert chain().batch([1, 2, 3], {"callbacks": [OscarTracer(provider)]}) == [3, 5, 7]
    spans = exporter.get_finished_spans()
    assert tree(spans) == [SEQ, SEQ, SEQ]
    assert len({s.context.trace_id for s in spans}) == 3


async def test_abatch_gives_one_tree_per_input() -> None:
    provider, exporter = otel()
    out = await chain().abatch([1, 2], {"callbacks": [OscarTracer(provider)]})
    assert out == [3, 5]
    assert tree(exporter.get_finished_spans()) == [SEQ, SEQ]


def test_stream_tree() -> None:
    provider, exporter = otel()
    assert list(chain().stream(1, {"callbacks": [OscarTracer(provider)]})) == [3]
    assert tree(exporter.get_finished_spans()) == [SEQ]


async def test_astream_tree() -> None:
    provider, exporter = otel()
    chunks = [c async for c in chain().astream(1, {"callbacks": [OscarTracer(provider)]})]
    assert chunks == [3]
    assert tree(exporter.get_finished_spans()) == [SEQ]


def fail(x: int) -> int:
    raise ConnectionError("backend down")


FALLBACKS = [("RunnableWithFallbacks", [("double", []), ("fail", [])])]


def test_with_fallbacks_tree_and_error_status() -> None:
    provider, exporter = otel()
    runnable = RunnableLambda(fail).with_fallbacks([RunnableLambda(double)])
    assert runnable.invoke(2, {"callbacks": [OscarTracer(provider)]}) == 4
    spans = exporter.get_finished_spans()
    # langchain-core's sync fallbacks pass the parent config down; the tracer still nests
    assert tree(spans) == FALLBACKS
    failed = next(s for s in spans if s.name == "fail")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["error.type"] == "ConnectionError"
    event = failed.events[0]
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.message"] == "backend down"
    root = next(s for s in spans if s.name == "RunnableWithFallbacks")
    assert root.status.status_code is StatusCode.UNSET


async def test_with_fallbacks_async_and_stream_trees() -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider)
    runnable = RunnableLambda(fail).with_fallbacks([RunnableLambda(double)])
    assert await runnable.ainvoke(2, {"callbacks": [tracer]}) == 4
    assert tree(exporter.get_finished_spans()) == FALLBACKS
    exporter.clear()
    assert list(runnable.stream(2, {"callbacks": [tracer]})) == [4]
    assert tree(exporter.get_finished_spans()) == FALLBACKS
    exporter.clear()
    assert runnable.batch([1, 2], {"callbacks": [tracer]}) == [2, 4]
    assert tree(exporter.get_finished_spans()) == FALLBACKS * 2


def test_fallbacks_flatten_without_repair() -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider)
    tracer.repair_parents = False
    RunnableLambda(fail).with_fallbacks([RunnableLambda(double)]).invoke(2, {"callbacks": [tracer]})
    assert tree(exporter.get_finished_spans()) == [
        ("RunnableWithFallbacks", []),
        ("double", []),
        ("fail", []),
    ]


def test_with_retry_tree() -> None:
    provider, exporter = otel()
    calls = {"n": 0}

    def flaky(x: int) -> int:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TimeoutError("slow")
        return x

    runnable = RunnableLambda(flaky).with_retry(
        stop_after_attempt=3,
        wait_exponential_jitter=False,
        retry_if_exception_type=(TimeoutError,),
        exponential_jitter_params={"initial": 0.0, "max": 0.0},
    )
    assert runnable.invoke(5, {"callbacks": [OscarTracer(provider)]}) == 5
    spans = exporter.get_finished_spans()
    # the retry run takes its bound runnable's name; each attempt is its child
    assert tree(spans) == [("flaky", [("flaky", []), ("flaky", []), ("flaky", [])])]
    statuses = [s.status.status_code for s in sorted(spans, key=lambda s: s.start_time or 0)]
    assert statuses[1:] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]


def test_runnable_parallel_tree() -> None:
    provider, exporter = otel()
    parallel = RunnableParallel(a=RunnableLambda(add_one), b=RunnableLambda(double))
    runnable = RunnableLambda(minus_one) | parallel
    assert runnable.invoke(3, {"callbacks": [OscarTracer(provider)]}) == {"a": 3, "b": 4}
    assert tree(exporter.get_finished_spans()) == [
        (
            "RunnableSequence",
            [
                ("RunnableParallel<a,b>", [("add_one", []), ("double", [])]),
                ("minus_one", []),
            ],
        )
    ]


async def test_concurrent_async_runs_do_not_mix() -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider)
    async_chain = RunnableLambda(aadd_one) | RunnableLambda(adouble)
    results = await asyncio.gather(
        *(async_chain.ainvoke(i, {"callbacks": [tracer]}) for i in range(50))
    )
    assert results == [(i + 1) * 2 for i in range(50)]
    spans = exporter.get_finished_spans()
    assert tree(spans) == [("RunnableSequence", [("aadd_one", []), ("adouble", [])])] * 50
    # every child shares its parent's trace
    by_id = {s.context.span_id: s for s in spans}
    for span in spans:
        if span.parent is not None:
            assert by_id[span.parent.span_id].context.trace_id == span.context.trace_id


def test_root_joins_callers_current_span() -> None:
    provider, exporter = otel()
    with provider.get_tracer("test").start_as_current_span("request"):
        chain().invoke(1, {"callbacks": [OscarTracer(provider)]})
    assert tree(exporter.get_finished_spans()) == [("request", [SEQ])]


@pytest.mark.parametrize("cap", [1, 3])
def test_open_spans_are_bounded(cap: int) -> None:
    from uuid import uuid4

    provider, exporter = otel()
    tracer = OscarTracer(provider, max_open_runs=cap)
    for _ in range(10):
        tracer.on_chain_start(None, {}, run_id=uuid4(), name="never-ends")
    assert tracer.open_runs == cap
    evicted = exporter.get_finished_spans()
    assert len(evicted) == 10 - cap
    assert all(s.attributes and s.attributes["oscar.evicted"] for s in evicted)


def test_fallbacks_inside_a_sequence_nest_under_the_fallbacks_run() -> None:
    provider, exporter = otel()
    runnable = RunnableLambda(add_one) | RunnableLambda(fail).with_fallbacks(
        [RunnableLambda(double)]
    )
    assert runnable.invoke(1, {"callbacks": [OscarTracer(provider)]}) == 4
    assert tree(exporter.get_finished_spans()) == [
        (
            "RunnableSequence",
            [("RunnableWithFallbacks", [("double", []), ("fail", [])]), ("add_one", [])],
        )
    ]


def _start(tracer: OscarTracer, name: str, parent: object = None) -> object:
    from uuid import uuid4

    run = uuid4()
    tracer.on_chain_start(None, {}, run_id=run, parent_run_id=parent, name=name)  # type: ignore[arg-type]
    return run


def _end(tracer: OscarTracer, run: object) -> None:
    tracer.on_chain_end({}, run_id=run)  # type: ignore[arg-type]


@pytest.mark.parametrize("sdk_path", [pytest.param(True, marks=deferred), False])
def test_spans_wait_for_their_root_then_keep_their_own_times(sdk_path: bool) -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider)
    if not sdk_path:
        tracer._fast = None  # the start_span path: spans start and end with their runs
    root = _start(tracer, "root")
    child = _start(tracer, "child", root)
    grandchild = _start(tracer, "grandchild", child)
    _end(tracer, grandchild)
    _end(tracer, child)
    if sdk_path:
        assert exporter.get_finished_spans() == () and tracer.pending_spans == 2
    else:
        assert len(exporter.get_finished_spans()) == 2 and tracer.pending_spans == 0
    _end(tracer, root)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["grandchild", "child", "root"]  # in the order they ended
    assert tree(spans) == [("root", [("child", [("grandchild", [])])])]
    by_name = {s.name: s for s in spans}
    assert by_name["root"].start_time <= by_name["child"].start_time  # type: ignore[operator]
    assert by_name["grandchild"].end_time <= by_name["child"].end_time  # type: ignore[operator]
    assert by_name["child"].end_time <= by_name["root"].end_time  # type: ignore[operator]
    assert tracer.pending_spans == 0 and tracer.open_runs == 0


@deferred
def test_a_long_root_delivers_its_children_every_max_pending_spans() -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider, max_pending_spans=4)
    root = _start(tracer, "agent")
    for step in range(10):
        _end(tracer, _start(tracer, f"step{step}", root))
        assert tracer.pending_spans < 4  # bounded, whatever the root's length
    delivered = exporter.get_finished_spans()
    assert len(delivered) == 8 and all(s.parent is not None for s in delivered)
    tracer.flush()
    assert len(exporter.get_finished_spans()) == 10
    _end(tracer, root)
    spans = exporter.get_finished_spans()
    assert tree(spans) == [("agent", [(f"step{i}", []) for i in range(10)])]
    root_id = spans[-1].context.span_id
    assert all(s.parent.span_id == root_id for s in spans[:-1])  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError, match="max_pending_spans"):
        OscarTracer(provider, max_pending_spans=0)


def test_a_run_that_outlives_its_parent_is_delivered_when_it_ends() -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider)
    root = _start(tracer, "root")
    background = _start(tracer, "background", root)
    _end(tracer, root)
    assert [s.name for s in exporter.get_finished_spans()] == ["root"]
    _end(tracer, background)
    assert tree(exporter.get_finished_spans()) == [("root", [("background", [])])]
    assert tracer.pending_spans == 0


@deferred
def test_waiting_spans_are_delivered_at_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    import atexit

    from oscar_langchain.callbacks import tracer as tracer_module

    hooks: list[object] = []
    monkeypatch.setattr(atexit, "register", hooks.append)
    monkeypatch.setattr(atexit, "unregister", lambda fn: hooks.remove(fn) if fn in hooks else None)
    provider, exporter = otel()  # the SDK registers its shutdown hook here
    tracer = OscarTracer(provider)
    OscarTracer(provider)  # a second tracer: still one flush hook, after the provider's
    assert hooks.count(tracer_module._flush_live_tracers) == 1
    assert hooks[-1] is tracer_module._flush_live_tracers
    root = _start(tracer, "server-lifetime")
    _end(tracer, _start(tracer, "request", root))
    assert exporter.get_finished_spans() == ()
    tracer_module._flush_live_tracers()  # what the interpreter does at exit
    assert [s.name for s in exporter.get_finished_spans()] == ["request"]


@pytest.mark.parametrize("max_pending", [1, 3, 256])
def test_threads_sharing_a_tracer_deliver_every_span_once(max_pending: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    provider, exporter = otel()
    tracer = OscarTracer(provider, max_pending_spans=max_pending)
    runnable = chain()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: runnable.invoke(i, {"callbacks": [tracer]}), range(200)))
    assert results == [(i + 1) * 2 - 1 for i in range(200)]
    spans = exporter.get_finished_spans()
    assert len(spans) == 800 and len({s.context.span_id for s in spans}) == 800
    assert tree(spans) == [SEQ] * 200
    assert tracer.open_runs == 0 and tracer.pending_spans == 0 and tracer.internal_errors == 0


class _BaggageAtStart(SpanProcessor):
    """Acts on on_start (so the tracer takes start_span's path): records the baggage."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.seen[span.name] = baggage.get_baggage("user")


def test_processors_acting_on_start_see_each_runs_own_context() -> None:
    provider, exporter = otel()
    seen = _BaggageAtStart()
    provider.add_span_processor(seen)
    tracer = OscarTracer(provider)
    assert tracer._fast is None
    token = context.attach(baggage.set_baggage("user", "B"))
    root_b = _start(tracer, "root_b")
    child_b = _start(tracer, "child_b", root_b)
    context.detach(token)
    token = context.attach(baggage.set_baggage("user", "A"))
    _end(tracer, _start(tracer, "root_a"))  # a root ending elsewhere delivers nothing of B's
    context.detach(token)
    _end(tracer, child_b)
    _end(tracer, root_b)
    assert seen.seen == {"root_b": "B", "child_b": "B", "root_a": "A"}
    assert tree(exporter.get_finished_spans()) == [
        ("root_a", []),
        ("root_b", [("child_b", [])]),
    ]


@deferred
def test_a_processor_added_while_spans_are_open_gets_them_at_their_end() -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider, max_pending_spans=1)
    root = _start(tracer, "root")
    _end(tracer, _start(tracer, "child", root))  # delivered: the root's span is started
    late = _BaggageAtStart()  # acts on on_start: the direct path is off from now on
    provider.add_span_processor(late)
    late_exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(late_exporter))
    _end(tracer, _start(tracer, "second", root))
    _end(tracer, root)
    assert [s.name for s in exporter.get_finished_spans()] == ["child", "second", "root"]
    assert [s.name for s in late_exporter.get_finished_spans()] == ["second", "root"]


class _DuckProcessor:
    """A processor that is not a SpanProcessor subclass."""

    def __init__(self) -> None:
        self.ended: list[str] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        self.ended.append(span.name)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _NoOnEnding(_DuckProcessor):
    """Lacks the SDK-private _on_ending: the SDK's own Span.end fails on it."""

    _on_ending = property()  # type: ignore[assignment]


@pytest.mark.parametrize("processor", [_DuckProcessor, _NoOnEnding])
def test_a_duck_typed_processor_added_later_loses_nothing(processor: type) -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider)
    duck = processor()
    provider.add_span_processor(duck)
    for _ in range(20):
        assert chain().invoke(1, {"callbacks": [tracer]}) == 3
    assert tracer.pending_spans == 0  # bounded whatever the processor does
    if processor is _DuckProcessor:  # delivered through start_span, to both processors
        assert len(exporter.get_finished_spans()) == 80 and len(duck.ended) == 80
        assert tracer.internal_errors == 0
    else:  # SDKs >= 1.42 fail in their own end() (counted; the chain goes on), older deliver
        assert tracer.internal_errors >= 80 or len(duck.ended) == 80


@deferred
def test_ended_runs_wait_at_most_max_pending_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    from oscar_langchain.callbacks import tracer as tracer_module

    now = [1_000_000_000_000]
    monkeypatch.setattr(tracer_module, "_time_ns", lambda: now[0])
    provider, exporter = otel()
    tracer = OscarTracer(provider, max_pending_seconds=5.0)
    root = _start(tracer, "agent")
    _end(tracer, _start(tracer, "step0", root))
    now[0] += 4_000_000_000
    _end(tracer, _start(tracer, "step1", root))
    assert exporter.get_finished_spans() == ()  # 4 s: still waiting
    now[0] += 2_000_000_000
    _end(tracer, _start(tracer, "step2", root))  # 6 s after step0 ended: all delivered
    assert [s.name for s in exporter.get_finished_spans()] == ["step0", "step1", "step2"]
    with pytest.raises(ConfigurationError, match="max_pending_seconds"):
        OscarTracer(provider, max_pending_seconds=float("nan"))


def test_spans_are_exported_outside_the_flush_lock() -> None:
    import threading

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    free: list[bool] = []
    exported: list[str] = []

    class LockProbe(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            exported.extend(s.name for s in spans)

            def probe() -> None:  # another thread: an RLock held here would refuse it
                got = tracer._flush_lock.acquire(blocking=False)
                free.append(got)
                if got:
                    tracer._flush_lock.release()

            worker = threading.Thread(target=probe)
            worker.start()
            worker.join()
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(LockProbe()))
    tracer = OscarTracer(provider)
    chain().invoke(1, {"callbacks": [tracer]})
    # A slow exporter does not hold up other threads' runs (one export of the four spans
    # on the direct path, one per span through start_span).
    assert free in ([True], [True] * 4)
    assert len(exported) == 4 and "RunnableSequence" in exported


def test_the_wait_check_tolerates_a_queue_emptied_by_another_thread() -> None:
    from collections import deque

    tracer = OscarTracer(otel()[0])
    assert tracer._waited_too_long(deque(), 10**18) is False  # emptied between append and check
