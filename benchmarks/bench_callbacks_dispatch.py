"""LangChain's own cost of dispatching callbacks to one handler, sync and async.

The floor under any handler's per-run overhead: a 3-step LCEL chain (4 runs per call) is
invoked with no callbacks, with a handler that does nothing, and with oscar's tracer;
in async also with ``langchain_core.callbacks.manager.ahandle_event`` replaced, for this
measurement only, by a leaner equivalent that calls inline sync handlers directly (no
coroutine per handler, no empty ``asyncio.gather``): what an upstream change could save.
Configurations are interleaved call by call; thread-CPU medians. A second part counts,
with cProfile, the extra Python calls LangChain makes per chain call for one handler.

Run: python benchmarks/bench_callbacks_dispatch.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import inspect
import logging
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import langchain_core.callbacks.manager as lc_manager
from bench_callbacks import NoopHandler, achain, chain, provider

from oscar_langchain.callbacks import OscarTracer

RUNS_PER_CALL = 4
_LANGCHAIN = lc_manager.ahandle_event
logger = logging.getLogger(__name__)


async def lean_ahandle_event(
    handlers: list[Any],
    event_name: str,
    ignore_condition_name: str | None,
    *args: Any,
    **kwargs: Any,
) -> None:
    """``ahandle_event`` calling inline sync handlers directly (measurement only)."""
    rest = []
    for handler in handlers:
        if not handler.run_inline:
            rest.append(handler)
            continue
        if ignore_condition_name is not None and getattr(handler, ignore_condition_name):
            continue
        event = getattr(handler, event_name)
        if inspect.iscoroutinefunction(event):
            await lc_manager._ahandle_event_for_handler(
                handler, event_name, ignore_condition_name, *args, **kwargs
            )
            continue
        try:
            event(*args, **kwargs)
        except Exception as exc:
            logger.warning("Error in %s.%s callback: %r", type(handler).__name__, event_name, exc)
    if rest:
        await asyncio.gather(
            *(
                lc_manager._ahandle_event_for_handler(
                    h, event_name, ignore_condition_name, *args, **kwargs
                )
                for h in rest
            )
        )


Config = tuple[list[Any], Callable[..., Any]]


def configs(lean: bool) -> dict[str, Config]:
    out: dict[str, Config] = {
        "no callbacks": ([], _LANGCHAIN),
        "no-op handler": ([NoopHandler()], _LANGCHAIN),
        "oscar tracer": ([OscarTracer(provider())], _LANGCHAIN),
    }
    if lean:
        out |= {
            "no callbacks, lean dispatch": ([], lean_ahandle_event),
            "no-op handler, lean dispatch": ([NoopHandler()], lean_ahandle_event),
            "oscar tracer, lean dispatch": ([OscarTracer(provider())], lean_ahandle_event),
        }
    return out


def bench(calls: int, is_async: bool) -> dict[str, list[int]]:
    table = configs(lean=is_async)
    samples: dict[str, list[int]] = {name: [] for name in table}
    order = list(table)
    rng = random.Random(0)
    clock = time.thread_time_ns
    if not is_async:
        runnable = chain()
        for i in range(calls):
            rng.shuffle(order)
            for name in order:
                config = {"callbacks": table[name][0]}
                t0 = clock()
                runnable.invoke(i, config)
                samples[name].append(clock() - t0)
        return samples
    arunnable = achain()

    async def main() -> None:
        for i in range(calls):
            rng.shuffle(order)
            for name in order:
                handlers, dispatch = table[name]
                lc_manager.ahandle_event = dispatch  # type: ignore[assignment]
                config = {"callbacks": handlers}
                t0 = clock()
                await arunnable.ainvoke(i, config)
                samples[name].append(clock() - t0)
        lc_manager.ahandle_event = _LANGCHAIN

    asyncio.run(main())
    return samples


def report(title: str, samples: dict[str, list[int]]) -> None:
    print(
        f"\n### {title}: thread-CPU medians, µs added per run over the same dispatch's no callbacks"
    )
    medians = {name: statistics.median(v) / 1000 for name, v in samples.items()}
    for name, med in medians.items():
        base = medians["no callbacks, lean dispatch" if "lean" in name else "no callbacks"]
        print(f"{name:<32} {med:>9.1f} µs/call {(med - base) / RUNS_PER_CALL:>7.2f} µs/run")


def call_counts(handlers: list[Any], is_async: bool, calls: int = 1000) -> dict[str, int]:
    profile = cProfile.Profile()
    if is_async:
        arunnable = achain()

        async def main() -> None:
            for i in range(calls):
                await arunnable.ainvoke(i, {"callbacks": handlers})

        profile.enable()
        asyncio.run(main())
        profile.disable()
    else:
        runnable = chain()
        profile.enable()
        for i in range(calls):
            runnable.invoke(i, {"callbacks": handlers})
        profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    return {f"{Path(k[0]).name}:{k[2]}": v[1] for k, v in stats.items()}


def dispatch_calls() -> None:
    for is_async in (False, True):
        none, one = call_counts([], is_async), call_counts([NoopHandler()], is_async)
        extra = {k: (one.get(k, 0) - none.get(k, 0)) / 1000 for k in set(none) | set(one)}
        total = sum(extra.values())
        top = sorted(((v, k) for k, v in extra.items() if v >= 1), reverse=True)[:8]
        kind = "async" if is_async else "sync"
        print(f"\n### {kind}: extra Python calls per chain call for one no-op handler: {total:.0f}")
        for v, k in top:
            print(f"  {v:6.1f}  {k}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per configuration")
    args = parser.parse_args()
    gc.collect()
    gc.freeze()
    report("sync invoke", bench(args.calls, is_async=False))
    report("async ainvoke", bench(args.calls, is_async=True))
    dispatch_calls()


if __name__ == "__main__":
    main()
