"""Per-run overhead of oscar's callback handlers vs OpenInference's LangChain tracer.

A 3-step LCEL chain of lambdas (4 LangChain runs per call: the sequence and its three
steps) is invoked with no callbacks, with each of oscar's handlers, with all three,
and with openinference-instrumentation-langchain's ``OpenInferenceTracer``. Both
tracers export to the same kind of OpenTelemetry SDK ``TracerProvider`` (a simple span
processor with an exporter that drops spans), so the difference is the handler.
Configurations are interleaved round by round so machine noise hits all of them alike.

Run: python benchmarks/bench_callbacks.py [--calls 300] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.runnables import RunnableLambda
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from oscar_langchain.callbacks import (
    ErrorAggregator,
    ErrorCallbackHandler,
    OscarTracer,
    PerformanceCallbackHandler,
    PerformanceStats,
)

RUNS_PER_CALL = 4


class DropExporter(SpanExporter):
    """Counts spans and drops them."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def provider() -> tuple[TracerProvider, DropExporter]:
    exporter = DropExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp, exporter


def openinference_tracer(tp: TracerProvider) -> Any:
    from openinference.instrumentation import OITracer, TraceConfig
    from openinference.instrumentation.langchain import __version__
    from openinference.instrumentation.langchain._tracer import OpenInferenceTracer

    tracer = OITracer(tp.get_tracer("openinference", __version__), config=TraceConfig())
    return OpenInferenceTracer(tracer, False)


def build_configs() -> dict[str, list[Any]]:
    tp_ours, _ = provider()
    tp_oi, _ = provider()
    tracer = OscarTracer(tp_ours)
    stats = PerformanceCallbackHandler(PerformanceStats())
    errors = ErrorCallbackHandler(ErrorAggregator())
    tp_all, _ = provider()
    return {
        "no callbacks": [],
        "oscar tracer": [tracer],
        "oscar stats": [stats],
        "oscar errors": [errors],
        "oscar all three": [
            OscarTracer(tp_all),
            PerformanceCallbackHandler(PerformanceStats()),
            ErrorCallbackHandler(ErrorAggregator()),
        ],
        "openinference tracer": [openinference_tracer(tp_oi)],
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


def bench_sync(configs: dict[str, list[Any]], calls: int, rounds: int) -> dict[str, list[float]]:
    c = chain()
    samples: dict[str, list[float]] = {name: [] for name in configs}
    perf = time.perf_counter
    for _ in range(rounds):
        for name, handlers in configs.items():
            config = {"callbacks": handlers}
            for i in range(20):  # warm-up
                c.invoke(i, config)
            out = samples[name]
            for i in range(calls):
                t0 = perf()
                c.invoke(i, config)
                out.append(perf() - t0)
    return samples


def bench_async(configs: dict[str, list[Any]], calls: int, rounds: int) -> dict[str, list[float]]:
    c = achain()
    samples: dict[str, list[float]] = {name: [] for name in configs}
    perf = time.perf_counter

    async def main() -> None:
        for _ in range(rounds):
            for name, handlers in configs.items():
                config = {"callbacks": handlers}
                for i in range(20):
                    await c.ainvoke(i, config)
                out = samples[name]
                for i in range(calls):
                    t0 = perf()
                    await c.ainvoke(i, config)
                    out.append(perf() - t0)

    asyncio.run(main())
    return samples


def report(title: str, samples: dict[str, list[float]]) -> dict[str, float]:
    medians = {name: statistics.median(v) * 1e6 for name, v in samples.items()}
    base = medians["no callbacks"]
    oi_over = (medians["openinference tracer"] - base) / RUNS_PER_CALL
    print(
        f"\n{title}: median per call (µs) and added per traced run (µs, {RUNS_PER_CALL} runs/call)"
    )
    print(f"{'configuration':<22} {'per call':>10} {'added/run':>10} {'vs OpenInference':>17}")
    result = {}
    for name, med in medians.items():
        added = (med - base) / RUNS_PER_CALL
        result[name] = added
        ratio = f"{added / oi_over:.2f}x" if name != "no callbacks" and oi_over > 0 else "-"
        print(f"{name:<22} {med:>10.1f} {added:>10.1f} {ratio:>17}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per config per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    args = parser.parse_args()
    gc.collect()
    gc.freeze()
    print(f"python {sys.version.split()[0]}; {args.rounds} rounds x {args.calls} calls per config")
    report("sync invoke", bench_sync(build_configs(), args.calls, args.rounds))
    report("async ainvoke", bench_async(build_configs(), args.calls, args.rounds))


if __name__ == "__main__":
    main()
