from __future__ import annotations

import asyncio
import threading

import pytest

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.routing import MemoryLimitStore, Reservation, Route


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rpm_sliding_window():
    clock = Clock()
    store = MemoryLimitStore(clock=clock)
    r = Route(name="a", runnable=None, rpm=3)
    for t in (0.0, 10.0, 20.0):
        clock.now = t
        assert isinstance(store.try_acquire(r, tokens=0, cost=0.0), Reservation)
    clock.now = 59.0
    assert store.try_acquire(r, tokens=0, cost=0.0) == "rpm limit reached (3/3)"
    clock.now = 60.5  # the call at t=0 left the window
    assert isinstance(store.try_acquire(r, tokens=0, cost=0.0), Reservation)
    assert store.usage(["a"])["a"].requests == 3


def test_tpm_settles_real_tokens_and_budget_real_cost():
    clock = Clock()
    store = MemoryLimitStore(clock=clock)
    r = Route(name="a", runnable=None, tpm=1000, budget=1.0)
    res = store.try_acquire(r, tokens=800, cost=0.5)
    assert isinstance(res, Reservation)
    assert "tpm" in store.try_acquire(r, tokens=300, cost=0.0)
    store.release(res, tokens=200, cost=0.1)  # the call used less than booked
    u = store.usage(["a"])["a"]
    assert (u.tokens, u.spent, u.in_flight) == (200, pytest.approx(0.1), 0)
    store.release(res, tokens=1, cost=1.0)  # a second release changes nothing
    assert store.usage(["a"])["a"].tokens == 200
    assert "budget" in store.try_acquire(r, tokens=0, cost=0.95)
    store.reset("a")
    assert store.usage(["a"])["a"].spent == 0.0
    store.reset()
    assert store.describe() == "memory"


def test_expired_entry_is_not_adjusted_on_release():
    clock = Clock()
    store = MemoryLimitStore(clock=clock, window=10)
    r = Route(name="a", runnable=None, tpm=100)
    res = store.try_acquire(r, tokens=50, cost=0.0)
    clock.now = 20.0
    store.release(res, tokens=80)
    assert store.usage(["a"])["a"].tokens == 0


def test_window_validation():
    with pytest.raises(ConfigurationError):
        MemoryLimitStore(window=0)


def test_limits_hold_exactly_under_threads():
    store = MemoryLimitStore(clock=Clock())
    routes = {
        "rpm": Route(name="rpm", runnable=None, rpm=25),
        "tpm": Route(name="tpm", runnable=None, tpm=1000),
        "budget": Route(name="budget", runnable=None, budget=1.0),
        "inflight": Route(name="inflight", runnable=None, max_in_flight=5),
    }
    granted = {k: 0 for k in routes}
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def worker():
        barrier.wait()
        for _ in range(20):
            for key, route in routes.items():
                res = store.try_acquire(route, tokens=30, cost=0.03)
                if isinstance(res, Reservation):
                    with lock:
                        granted[key] += 1

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted["rpm"] == 25
    assert granted["tpm"] == 1000 // 30
    assert granted["budget"] == 33  # 33 * 0.03 = 0.99 <= 1.0 < 34 * 0.03
    assert granted["inflight"] == 5
    assert store.usage(["inflight"])["inflight"].in_flight == 5


async def test_limits_hold_exactly_under_asyncio():
    store = MemoryLimitStore(clock=Clock())
    route = Route(name="a", runnable=None, rpm=40, max_in_flight=3)
    peak = 0
    running = 0
    served = 0

    async def call():
        nonlocal peak, running, served
        res = store.try_acquire(route, tokens=1, cost=0.0)
        if not isinstance(res, Reservation):
            return
        running += 1
        peak = max(peak, running)
        served += 1
        await asyncio.sleep(0)
        running -= 1
        store.release(res)

    for _ in range(10):
        await asyncio.gather(*(call() for _ in range(20)))
    assert peak == 3
    assert served == 30  # 10 rounds x 3 in-flight slots, all inside one window
    assert store.usage(["a"])["a"].requests == 30
