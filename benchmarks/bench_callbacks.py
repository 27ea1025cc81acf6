"""Per-run overhead of oscar's callback handlers vs OpenInference's LangChain tracer.

A 3-step LCEL chain of lambdas (4 LangChain runs per call: the sequence and its three
steps) is invoked with no callbacks, with a no-op handler (LangChain's own cost of
having any handler), with each of oscar's handlers, with all three (as three handlers
and as the one combined handler ``oscar_callbacks()`` installs), and with
openinference-instrumentation-langchain's ``OpenInferenceTracer``. Both tracers export
to the same kind of OpenTelemetry SDK ``TracerProvider`` (a simple span processor with
an exporter that drops spans), so the difference is the handler. Configurations are
interleaved round by round so machine noise hits all of them alike, and each call is
timed both on the wall clock and in thread CPU time (robust to other processes on a
shared machine). A last table runs a prompt | chat model | parser pipeline with an
instant fake model: the worst case for the relative overhead of all three handlers.

Run: python benchmarks/bench_callbacks.py [--calls 25] [--rounds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from oscar_langchain.callbacks import (
    ErrorAggregator,
    ErrorCallbackHandler,
    OscarTracer,
    PerformanceCallbackHandler,
    PerformanceStats,
    oscar_callbacks,
)

RUNS_PER_CALL = 4
Clock = Callable[[], float]


class DropExporter(SpanExporter):
    """Counts spans and drops them."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


class NoopHandler(BaseCallbackHandler):
    run_inline = True


def provider() -> TracerProvider:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(DropExporter()))
    return tp


def openinference_tracer(tp: TracerProvider) -> Any:
    from openinference.instrumentation import OITracer, TraceConfig
    from openinference.instrumentation.langchain import __version__
    from openinference.instrumentation.langchain._tracer import OpenInferenceTracer

    tracer = OITracer(tp.get_tracer("openinference", __version__), config=TraceConfig())
    return OpenInferenceTracer(tracer, False)


def build_configs() -> dict[str, list[Any]]:
    three = [
        OscarTracer(provider()),
        PerformanceCallbackHandler(PerformanceStats()),
        ErrorCallbackHandler(ErrorAggregator()),
    ]
    combined = oscar_callbacks(tracer_provider=provider(), stats=PerformanceStats())
    return {
        "no callbacks": [],
        "no-op handler": [NoopHandler()],
        "oscar tracer": [OscarTracer(provider())],
        "oscar stats": [PerformanceCallbackHandler(PerformanceStats())],
        "oscar errors": [ErrorCallbackHandler(ErrorAggregator())],
        "oscar all three (3)": three,
        "oscar_callbacks()": combined.handlers,
        "openinference tracer": [openinference_tracer(provider())],
    }


def chain() -> Any:
    return (
        RunnableLambda(lambda x: x + 1)
        | RunnableLambda(lambda x: x * 2)
        | RunnableLambda(lambda x: x - 1)
    )


async def _add(x: int) -> int:
    return x + 1


async def _double(x: int) -> int:
    return x * 2


async def _dec(x: int) -> int:
    return x - 1


def achain() -> Any:
    """Async lambdas, so ``ainvoke`` measures callbacks, not thread-pool hops."""
    return RunnableLambda(_add) | RunnableLambda(_double) | RunnableLambda(_dec)


Samples = dict[str, dict[str, list[float]]]


def _new(configs: dict[str, list[Any]]) -> Samples:
    return {"wall": {n: [] for n in configs}, "cpu": {n: [] for n in configs}}


def bench_sync(
    runnable: Any,
    inputs: Callable[[int], Any],
    configs: dict[str, list[Any]],
    calls: int,
    rounds: int,
) -> Samples:
    samples = _new(configs)
    wall, cpu = time.perf_counter, time.thread_time
    order = list(configs)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            config = {"callbacks": configs[name]}
            for i in range(3):  # warm-up
                runnable.invoke(inputs(i), config)
            w_out, c_out = samples["wall"][name], samples["cpu"][name]
            for i in range(calls):
                x = inputs(i)
                c0, w0 = cpu(), wall()
                runnable.invoke(x, config)
                w1, c1 = wall(), cpu()
                w_out.append(w1 - w0)
                c_out.append(c1 - c0)
    return samples


def bench_async(configs: dict[str, list[Any]], calls: int, rounds: int) -> Samples:
    runnable = achain()
    samples = _new(configs)
    wall, cpu = time.perf_counter, time.thread_time

    order = list(configs)
    rng = random.Random(1)

    async def main() -> None:
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                config = {"callbacks": configs[name]}
                for i in range(3):
                    await runnable.ainvoke(i, config)
                w_out, c_out = samples["wall"][name], samples["cpu"][name]
                for i in range(calls):
                    c0, w0 = cpu(), wall()
                    await runnable.ainvoke(i, config)
                    w1, c1 = wall(), cpu()
                    w_out.append(w1 - w0)
                    c_out.append(c1 - c0)

    asyncio.run(main())
    return samples


def report(title: str, samples: Samples, runs_per_call: int = RUNS_PER_CALL) -> None:
    print(f"\n### {title} (medians; 'added/run' = (config - no callbacks) / {runs_per_call} runs)")
    print(
        f"{'configuration':<22} {'wall µs/call':>12} {'added/run':>10} {'cpu µs/call':>12} "
        f"{'added/run':>10} {'added %':>8} {'vs OpenInference':>17}"
    )
    wall = {n: statistics.median(v) * 1e6 for n, v in samples["wall"].items()}
    cpu = {n: statistics.median(v) * 1e6 for n, v in samples["cpu"].items()}
    w0, c0 = wall["no callbacks"], cpu["no callbacks"]
    oi = (cpu["openinference tracer"] - c0) / runs_per_call if "openinference tracer" in cpu else 0
    for name, w in wall.items():
        w_add = (w - w0) / runs_per_call
        c_add = (cpu[name] - c0) / runs_per_call
        ratio = f"{c_add / oi:.2f}x" if oi > 0 and name != "no callbacks" else "-"
        pct = 100.0 * (cpu[name] - c0) / c0
        print(
            f"{name:<22} {w:>12.1f} {w_add:>10.1f} {cpu[name]:>12.1f} {c_add:>10.1f} "
            f"{pct:>7.1f}% {ratio:>17}"
        )


def otel_floor(n: int = 20_000) -> float:
    """Thread CPU µs for one SDK span (child of a parent, start + end): the tracer's floor."""
    tracer = provider().get_tracer("floor")
    parent = tracer.start_span("parent")
    ctx = trace.set_span_in_context(parent)
    best = float("inf")
    for _ in range(5):
        c0 = time.thread_time()
        for _ in range(n):
            tracer.start_span("child", context=ctx).end()
        best = min(best, (time.thread_time() - c0) / n * 1e6)
    return best


def handler_only(n: int = 5000) -> None:
    """Thread CPU µs per run spent inside each handler (start + end events, no LangChain)."""
    handlers: dict[str, Any] = {
        "oscar tracer": OscarTracer(provider()),
        "oscar stats": PerformanceCallbackHandler(PerformanceStats()),
        "oscar errors": ErrorCallbackHandler(ErrorAggregator()),
        "oscar_callbacks()": oscar_callbacks(
            tracer_provider=provider(), stats=PerformanceStats()
        ).handler,
    }
    root, steps = uuid4(), [uuid4() for _ in range(3)]
    print("\n### handler-only cost (best of 5; one sequence run + 3 child runs, direct calls)")
    print(f"{'handler':<22} {'cpu µs/run':>10}")
    for name, h in handlers.items():
        best = float("inf")
        for _ in range(5):
            c0 = time.thread_time()
            for _ in range(n):
                h.on_chain_start(None, 1, run_id=root, parent_run_id=None, tags=[], name="seq")
                for step in steps:
                    h.on_chain_start(None, 1, run_id=step, parent_run_id=root, tags=[], name="f")
                    h.on_chain_end(2, run_id=step, parent_run_id=root, tags=[])
                h.on_chain_end(2, run_id=root, parent_run_id=None, tags=[])
            best = min(best, (time.thread_time() - c0) / n / RUNS_PER_CALL * 1e6)
        print(f"{name:<22} {best:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=25, help="calls per config per round")
    parser.add_argument("--rounds", type=int, default=60, help="interleaved rounds (shuffled)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # OpenInference calls a deprecated LangChain method
    gc.collect()
    gc.freeze()
    print(f"python {sys.version.split()[0]}; {args.rounds} rounds x {args.calls} calls per config")
    print(f"OpenTelemetry SDK floor: {otel_floor():.1f} µs CPU per child span (start + end)")
    handler_only()
    report(
        "sync invoke, 3 lambdas",
        bench_sync(chain(), lambda i: i, build_configs(), args.calls, args.rounds),
    )
    report("async ainvoke, 3 async lambdas", bench_async(build_configs(), args.calls, args.rounds))
    pipeline = (
        ChatPromptTemplate.from_messages([("human", "{q}")])
        | FakeListChatModel(responses=["an answer"])
        | StrOutputParser()
    )
    configs = build_configs()
    pipe = {k: configs[k] for k in ("no callbacks", "oscar_callbacks()", "openinference tracer")}
    report(
        "pipeline prompt | instant fake chat model | parser (worst case for the % overhead)",
        bench_sync(pipeline, lambda i: {"q": f"question {i}"}, pipe, args.calls, args.rounds // 2),
    )


if __name__ == "__main__":
    main()
