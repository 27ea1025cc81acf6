"""End-to-end cost of ``oscar_callbacks()`` on the demo pipeline with the real local model.

The observability demo's chain (``oscar_langchain.demo.callbacks.build_chain``: keyword
retrieval, a flaky rerank step under ``with_retry``, the prompt, a failing primary model
``with_fallbacks`` to Gemma 3 270M served by llama-server through ``ChatOpenAI``, a
parser) answers the demo's questions with no callbacks and with all three of oscar's
handlers installed (``oscar_callbacks()``, spans to an SDK ``TracerProvider`` with the
demo's in-memory exporter). Each configuration has its own chain instance, so both see
the same sequence of retried steps. Every question is first asked once untimed (the
server's prompt cache is then equally warm for both), then the two configurations run
in interleaved pairs whose order alternates (ABBA), with greedy decoding so both get
the same tokens; answers are cut at ``--max-tokens`` to keep the run short. Reported: median wall time per question, the overhead of the medians,
the paired differences (median; mean with a 95% interval), and the callbacks' client-side thread CPU time
per question as a share of the question's wall time (the steadiest of the three on a
shared machine: the model's time is in another process).

Run: python benchmarks/bench_callbacks_pipeline.py [--repeats 4] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from oscar_langchain.callbacks import PerformanceStats, oscar_callbacks
from oscar_langchain.demo.__main__ import load_context
from oscar_langchain.demo.callbacks import build_chain
from oscar_langchain.local import LocalModelServer


def timed(chain: Any, question: str, config: dict[str, Any]) -> tuple[float, float, str]:
    """(wall s, this thread's CPU s, answer) for one question."""
    c0, w0 = time.thread_time(), time.perf_counter()
    answer = chain.invoke(question, config)
    return time.perf_counter() - w0, time.thread_time() - c0, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="passes over the questions")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=16,
        help="answer length (the demo's 128 takes ~15 s a question on a busy 2-core box; "
        "shorter answers make the relative overhead larger, not smaller)",
    )
    args = parser.parse_args()
    ctx = load_context()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cb = oscar_callbacks(tracer_provider=provider, stats=PerformanceStats())
    with LocalModelServer() as server:
        ctx.chat_model = lambda index, **kwargs: server.chat_model(
            **{"max_tokens": args.max_tokens, **kwargs}
        )
        chains = {"no callbacks": build_chain(ctx), "oscar_callbacks()": build_chain(ctx)}
        configs: dict[str, dict[str, Any]] = {
            "no callbacks": {},
            "oscar_callbacks()": {"callbacks": cb.handlers},
        }
        warm = build_chain(ctx)
        for question in ctx.questions:  # warm the server's prompt cache for every question
            warm.invoke(question)
        wall: dict[str, list[float]] = {name: [] for name in chains}
        cpu: dict[str, list[float]] = {name: [] for name in chains}
        answers: dict[str, list[str]] = {name: [] for name in chains}
        order = list(chains)
        t_start = time.perf_counter()
        for _ in range(args.repeats):
            for question in ctx.questions:
                for name in order:
                    w, c, answer = timed(chains[name], question, configs[name])
                    wall[name].append(w)
                    cpu[name].append(c)
                    answers[name].append(answer)
                order.reverse()  # ABBA: each configuration goes first half the time
        elapsed = time.perf_counter() - t_start
    base, with_cb = "no callbacks", "oscar_callbacks()"
    same = sum(a == b for a, b in zip(answers[base], answers[with_cb], strict=True))
    paired = [b - a for a, b in zip(wall[base], wall[with_cb], strict=True)]
    median_wall = {name: statistics.median(v) for name, v in wall.items()}
    median_cpu = {name: statistics.median(v) for name, v in cpu.items()}
    cpu_added = median_cpu[with_cb] - median_cpu[base]
    n = len(wall[base])
    print(f"python {sys.version.split()[0]}; {n} questions per configuration, {elapsed:.0f} s")
    print(f"identical answers in {same}/{n} pairs; {len(exporter.get_finished_spans())} spans")
    print(f"\n{'configuration':<20} {'wall ms/question':>17} {'client cpu ms':>14}")
    for name in chains:
        print(f"{name:<20} {median_wall[name] * 1e3:>17.1f} {median_cpu[name] * 1e3:>14.2f}")
    print(
        f"\noverhead of the medians (wall):        "
        f"{100 * (median_wall[with_cb] / median_wall[base] - 1):+.2f}%"
    )
    print(
        f"median paired difference (wall):       {statistics.median(paired) * 1e3:+.2f} ms "
        f"({100 * statistics.median(paired) / median_wall[base]:+.2f}%)"
    )
    half = 1.96 * statistics.stdev(paired) / len(paired) ** 0.5
    mean = statistics.mean(paired)
    print(
        f"mean paired difference, 95% interval:  {mean * 1e3:+.1f} ms ± {half * 1e3:.1f} ms "
        f"({100 * mean / median_wall[base]:+.2f}% ± {100 * half / median_wall[base]:.2f}%)"
    )
    print(
        f"callbacks' client CPU per question:    {cpu_added * 1e3:.2f} ms "
        f"({100 * cpu_added / median_wall[base]:.2f}% of the question's wall time)"
    )
    print(f"handlers' internal errors: {cb.internal_errors}")


if __name__ == "__main__":
    main()
