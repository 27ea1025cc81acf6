"""Route limits on a real redis-server: exact across two OS processes; local fallback."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from oscar_langchain.routing import MemoryLimitStore, RedisLimitStore, Reservation, Route

pytestmark = pytest.mark.redis

ROUTES = {
    "rpm": dict(rpm=37),
    "tpm": dict(tpm=1000),
    "budget": dict(budget=1.0),
}


def _hammer(url: str, prefix: str, start_at: float, queue: mp.Queue) -> None:
    store = RedisLimitStore(url, prefix=prefix)
    routes = {k: Route(name=k, runnable=None, **v) for k, v in ROUTES.items()}
    granted = dict.fromkeys(routes, 0)
    while time.time() < start_at:
        time.sleep(0.001)
    for _ in range(60):
        for key, route in routes.items():
            res = store.try_acquire(route, tokens=30, cost=0.03)
            if isinstance(res, Reservation):
                granted[key] += 1
                store.release(res)
    queue.put(granted)


def test_limits_hold_exactly_across_two_processes(redis_server):
    prefix = f"t{time.time_ns()}"
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    start_at = time.time() + 2.0
    procs = [
        ctx.Process(target=_hammer, args=(redis_server.url, prefix, start_at, queue))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    total = {k: sum(r[k] for r in results) for k in ROUTES}
    assert total == {"rpm": 37, "tpm": 1000 // 30, "budget": 33}
    assert all(r["rpm"] > 0 for r in results)  # both processes really competed
    usage = RedisLimitStore(redis_server.url, prefix=prefix).usage(list(ROUTES))
    assert usage["rpm"].requests == 37 and usage["rpm"].in_flight == 0
    assert usage["budget"].spent == pytest.approx(0.99)


def test_release_settles_tokens_and_cost_and_window_slides(redis_server):
    now = [1000.0]
    store = RedisLimitStore(redis_server.url, prefix=f"s{time.time_ns()}", clock=lambda: now[0])
    route = Route(name="a", runnable=None, tpm=100, rpm=5, budget=1.0, max_in_flight=1)
    res = store.try_acquire(route, tokens=90, cost=0.5)
    assert isinstance(res, Reservation) and res.backend == "redis"
    assert store.try_acquire(route, tokens=1, cost=0.0).startswith("in-flight limit")
    store.release(res, tokens=40, cost=0.2)
    u = store.usage(["a"])["a"]
    assert (u.in_flight, u.requests, u.tokens) == (0, 1, 40)
    assert u.spent == pytest.approx(0.2)
    assert store.try_acquire(route, tokens=61, cost=0.0).startswith("tpm limit: 40 used")
    assert store.try_acquire(route, tokens=0, cost=0.9).startswith("budget exhausted")
    now[0] += 61
    assert store.usage(["a"])["a"].tokens == 0
    store.reset("a")
    assert store.usage(["a"])["a"].spent == 0.0
    assert store.describe() == "redis"


def test_falls_back_to_local_limits_when_redis_is_down_and_recovers(own_redis_server, caplog):
    now = [0.0]
    local = MemoryLimitStore(clock=lambda: now[0])
    store = RedisLimitStore(
        own_redis_server.url, clock=lambda: now[0], fallback=local, retry_interval=5.0
    )
    route = Route(name="a", runnable=None, rpm=2)
    assert store.try_acquire(route, tokens=1, cost=0.0).backend == "redis"
    own_redis_server.stop()
    res = store.try_acquire(route, tokens=1, cost=0.0)
    assert isinstance(res, Reservation) and res.backend == "memory"
    assert store.describe().startswith("local (redis down:")
    assert "falling back to local" in caplog.text
    assert store.usage(["a"])["a"].requests == 1  # the local count
    store.release(res)
    assert isinstance(store.try_acquire(route, tokens=1, cost=0.0), Reservation)
    assert store.try_acquire(route, tokens=1, cost=0.0).startswith("rpm limit")  # local holds
    own_redis_server.start()
    now[0] = 10.0
    assert store.try_acquire(route, tokens=1, cost=0.0).backend == "redis"
    assert store.describe() == "redis"
