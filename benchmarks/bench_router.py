"""Router performance: decision time at 10/100/1,000 routes; invoke overhead vs LangChain.

Run: python benchmarks/bench_router.py [--repeat N] [--part decide|invoke]

Times are thread CPU time (steadier than wall time on a shared machine).
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.runnables import RunnableBranch, RunnableLambda

from oscar_langchain.routing import Cheapest, QualityFloor, Route, RoutingEngine
from oscar_langchain.routing.router import RouterRunnable


def routes(n: int) -> list[Route]:
    return [
        Route(
            name=f"r{i}",
            runnable=None,
            context_window=4096 * (1 + i % 8),
            input_price=0.1 + (i * 7919 % 1000) / 100,
            output_price=0.2 + (i * 104729 % 1000) / 100,
            quality=(i * 31 % 100) / 100,
            capabilities={"tools"} if i % 2 else {"tools", "vision"},
        )
        for i in range(n)
    ]


def per_call_us(fn, number: int, repeat: int) -> float:
    runs = timeit.repeat(fn, number=number, repeat=repeat, timer=time.thread_time)
    return min(runs) / number * 1e6


def decision_times(repeat: int) -> dict[tuple[str, int], float]:
    out = {}
    for selector in (QualityFloor(), Cheapest()):
        for n in (10, 100, 1000):
            engine = RoutingEngine(routes(n), selector=selector)
            req = engine.request(
                input_tokens=6000, output_tokens=512, capabilities={"tools"}, complexity=0.4
            )
            number = max(20, 20_000 // n)
            out[(type(selector).__name__, n)] = per_call_us(
                lambda e=engine, r=req: e.decide(r), number, repeat
            )
    return out


def overhead(repeat: int, number: int = 1000) -> dict[str, float]:
    """µs of thread CPU time per invoke, best of ``repeat`` interleaved rounds."""
    a = RunnableLambda(lambda x: x, name="a")
    b = RunnableLambda(lambda x: x, name="b")
    branch = RunnableBranch((lambda x: len(x) > 100, b), a)
    fallbacks = a.with_fallbacks([b])
    common = dict(
        routes=[
            Route(name="a", runnable=a, input_price=0.1),
            Route(name="b", runnable=b, input_price=1.0),
        ],
        selector=Cheapest(),
        token_counter=lambda m: 1,
        complexity=None,
    )
    router = RouterRunnable(**common)
    router_nb = RouterRunnable(**common, breakers={})
    router_full = RouterRunnable(**{**common, "token_counter": None})
    x = "hello"
    contenders = {
        "RunnableLambda (direct)": lambda: a.invoke(x),
        "RunnableBranch": lambda: branch.invoke(x),
        "with_fallbacks": lambda: fallbacks.invoke(x),
        "RouterRunnable (breakers, no tokenizer)": lambda: router.invoke(x),
        "RouterRunnable (no breakers)": lambda: router_nb.invoke(x),
        "RouterRunnable (+ tiktoken count)": lambda: router_full.invoke(x),
    }
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeat):  # interleaved: every contender sees the same machine load
        for name, fn in contenders.items():
            fn()
            seconds = timeit.timeit(fn, number=number, timer=time.thread_time)
            best[name] = min(best[name], seconds / number * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--part", choices=("all", "decide", "invoke"), default="all")
    args = parser.parse_args()
    if args.part != "invoke":
        print_decisions(args.repeat)
    if args.part != "decide":
        print_overhead(args.repeat)


def print_decisions(repeat: int) -> None:
    print("Decision time (RoutingEngine.decide: 5 default filters + selector), best of", repeat)
    times = decision_times(repeat)
    print(f"{'selector':<14}{'routes':>8}{'µs/decision':>14}{'µs/route':>11}")
    for (sel, n), us in times.items():
        print(f"{sel:<14}{n:>8}{us:>14.1f}{us / n:>11.3f}")


def print_overhead(repeat: int) -> None:
    print("\nInvoke on a trivial runnable (2 routes), µs of thread CPU time, best of", repeat)
    ov = overhead(repeat)
    base_b = ov["RunnableBranch"]
    base_f = ov["with_fallbacks"]
    direct = ov["RunnableLambda (direct)"]
    print(f"{'runnable':<42}{'µs/invoke':>11}{'added':>9}{'vs Branch':>11}{'vs fallbacks':>14}")
    for name, us in ov.items():
        print(f"{name:<42}{us:>11.1f}{us - direct:>9.1f}{us / base_b:>10.2f}x{us / base_f:>13.2f}x")


if __name__ == "__main__":
    main()
