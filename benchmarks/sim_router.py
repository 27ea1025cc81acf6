"""Routing simulation with known ground truth: adaptive vs always-strong/cheap/random.

Three routes with stated costs and success probabilities that fall with input
complexity c ~ U(0, 1). The objective is the router's: reach the quality target at
the lowest cost. The per-request loss of a route is its cost / the strong cost if its
true success chance meets the target, else 1 + 10 x the shortfall; the oracle picks
the least-loss route knowing the truth; regret is cumulative loss minus the oracle's.

Run: python benchmarks/sim_router.py [--steps 3000] [--seeds 3] [--plot docs/router_regret.png]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oscar_langchain.routing import Route, ThompsonSelector
from oscar_langchain.routing.candidate import Request, resolve

TARGET = 0.8
COSTS = {"cheap": 1.0, "mid": 5.0, "strong": 25.0}


def p_success(route: str, c: float) -> float:
    return {"cheap": 0.97 - 0.8 * c, "mid": 0.98 - 0.35 * c, "strong": 0.98 - 0.1 * c}[route]


def loss(route: str, c: float) -> float:
    p = p_success(route, c)
    return COSTS[route] / COSTS["strong"] if p >= TARGET else 1.0 + 10 * (TARGET - p)


def oracle(c: float) -> str:
    return min(COSTS, key=lambda r: loss(r, c))


def simulate(steps: int, seed: int) -> dict[str, dict[str, list[float] | float]]:
    rng = random.Random(seed)
    cands = [
        resolve(Route(name=n, runnable=None, input_price=cost, quality=0.5))
        for n, cost in COSTS.items()
    ]
    sel = ThompsonSelector(
        quality_target=TARGET, bands=5, prior_strength=0, rng=random.Random(seed)
    )
    pick = {
        "adaptive": lambda c: (
            sel.rank(cands, Request(input_tokens=1_000_000, complexity=c))[0][0].name
        ),
        "always-strong": lambda c: "strong",
        "always-cheap": lambda c: "cheap",
        "random": lambda c: rng.choice(list(COSTS)),
        "oracle": oracle,
    }
    out: dict[str, dict[str, list[float] | float]] = {
        k: {"regret": [], "cost": 0.0, "success": 0.0} for k in pick
    }
    totals = dict.fromkeys(pick, 0.0)
    for _ in range(steps):
        c = rng.random()
        best = loss(oracle(c), c)
        for name, policy in pick.items():
            route = policy(c)
            ok = rng.random() < p_success(route, c)
            if name == "adaptive":
                sel.update(route, c, 1.0 if ok else 0.0)
            totals[name] += loss(route, c) - best
            rec = out[name]
            rec["regret"].append(totals[name])  # type: ignore[union-attr]
            rec["cost"] += COSTS[route]  # type: ignore[operator]
            rec["success"] += ok  # type: ignore[operator]
    for rec in out.values():
        rec["cost"] = rec["cost"] / steps  # type: ignore[operator]
        rec["success"] = rec["success"] / steps  # type: ignore[operator]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--plot", default="docs/router_regret.png")
    args = parser.parse_args()
    runs = [simulate(args.steps, seed) for seed in range(args.seeds)]
    names = list(runs[0])
    print(f"Simulation: {args.steps} requests x {args.seeds} seeds, quality target {TARGET}")
    print(
        f"{'policy':<15}{'avg cost':>10}{'success':>10}{'final regret':>14}"
        f"{'regret/req (last 1k)':>22}"
    )
    for n in names:
        cost = sum(r[n]["cost"] for r in runs) / len(runs)
        succ = sum(r[n]["success"] for r in runs) / len(runs)
        final = sum(r[n]["regret"][-1] for r in runs) / len(runs)
        tail = (
            sum((r[n]["regret"][-1] - r[n]["regret"][-1001]) / 1000 for r in runs) / len(runs)
            if args.steps > 1000
            else float("nan")
        )
        print(f"{n:<15}{cost:>10.2f}{succ:>10.3f}{final:>14.1f}{tail:>22.4f}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for n in names:
        if n == "oracle":
            continue
        mean = [sum(r[n]["regret"][t] for r in runs) / len(runs) for t in range(args.steps)]
        ax.plot(mean, label=n)
    ax.set_xlabel("requests")
    ax.set_ylabel("cumulative regret (loss vs oracle)")
    ax.set_title("Router simulation: Thompson sampling vs fixed policies")
    ax.set_yscale("symlog")
    ax.legend()
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=100)
    print(f"regret curve saved to {args.plot}")


if __name__ == "__main__":
    main()
