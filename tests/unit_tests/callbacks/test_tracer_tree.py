"""The tracer's span tree matches the LangChain run tree exactly."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.runnables import RunnableLambda, RunnableParallel
from opentelemetry.trace import StatusCode

from oscar_langchain.callbacks import OscarTracer
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


@pytest.mark.parametrize("sdk_path", [True, False])
def test_spans_wait_for_their_root_then_keep_their_own_times(sdk_path: bool) -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider)
    if not sdk_path:
        tracer._fast = None  # the start_span path defers the same way
    root = _start(tracer, "root")
    child = _start(tracer, "child", root)
    grandchild = _start(tracer, "grandchild", child)
    _end(tracer, grandchild)
    _end(tracer, child)
    assert exporter.get_finished_spans() == () and tracer.pending_spans == 2
    _end(tracer, root)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["grandchild", "child", "root"]  # in the order they ended
    assert tree(spans) == [("root", [("child", [("grandchild", [])])])]
    by_name = {s.name: s for s in spans}
    assert by_name["root"].start_time <= by_name["child"].start_time  # type: ignore[operator]
    assert by_name["grandchild"].end_time <= by_name["child"].end_time  # type: ignore[operator]
    assert by_name["child"].end_time <= by_name["root"].end_time  # type: ignore[operator]
    assert tracer.pending_spans == 0 and tracer.open_runs == 0


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
