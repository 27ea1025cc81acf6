"""Router performance: decision time at 10/100/1,000 routes; invoke overhead vs LangChain.

Run: python benchmarks/bench_router.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
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
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


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


def overhead(repeat: int) -> dict[str, float]:
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
    number = 2000
    x = "hello"
    return {
        "RunnableLambda (direct)": per_call_us(lambda: a.invoke(x), number, repeat),
        "RunnableBranch": per_call_us(lambda: branch.invoke(x), number, repeat),
        "with_fallbacks": per_call_us(lambda: fallbacks.invoke(x), number, repeat),
        "RouterRunnable (breakers, no tokenizer)": per_call_us(
            lambda: router.invoke(x), number, repeat
        ),
        "RouterRunnable (no breakers)": per_call_us(lambda: router_nb.invoke(x), number, repeat),
        "RouterRunnable (+ tiktoken count)": per_call_us(
            lambda: router_full.invoke(x), number, repeat
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        "Decision time (RoutingEngine.decide: 5 default filters + selector), best of", args.repeat
    )
    times = decision_times(args.repeat)
    print(f"{'selector':<14}{'routes':>8}{'µs/decision':>14}{'µs/route':>11}")
    for (sel, n), us in times.items():
        print(f"{sel:<14}{n:>8}{us:>14.1f}{us / n:>11.3f}")
    print("\nInvoke overhead on a trivial runnable (2 routes), best of", args.repeat)
    ov = overhead(args.repeat)
    base_b = ov["RunnableBranch"]
    base_f = ov["with_fallbacks"]
    print(f"{'runnable':<42}{'µs/invoke':>11}{'vs Branch':>11}{'vs fallbacks':>14}")
    for name, us in ov.items():
        print(f"{name:<42}{us:>11.1f}{us / base_b:>10.2f}x{us / base_f:>13.2f}x")


if __name__ == "__main__":
    main()
