"""RedisBreakerStore logic on a fake client (fallback, recovery, conflicts); the real
redis-server is exercised in tests/integration_tests/test_breaker_redis.py."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from oscar_langchain.breaker_store import BreakerStore, InMemoryBreakerStore, RedisBreakerStore
from oscar_langchain.circuit_breaker import (
    BreakerConfig,
    BreakerEvent,
    CircuitBreaker,
    CircuitState,
)
from oscar_langchain.errors import CircuitOpenError


class FakeRedis:
    """hmget + a compare-and-set script, in memory; ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, bytes]] = {}
        self.down = False
        self.steal = 0  # bump the version behind the caller's back this many times

    def _check(self) -> None:
        if self.down:
            raise redis.ConnectionError("connection refused")

    def hmget(self, key: str, *fields: str) -> list[bytes | None]:
        self._check()
        row = self.data.get(key, {})
        return [row.get(f) for f in fields]

    def register_script(self, source: str) -> Any:
        def cas(keys: list[str], args: list[Any]) -> int:
            self._check()
            row = self.data.setdefault(keys[0], {})
            if self.steal:
                self.steal -= 1
                row["v"] = str(int(row.get("v", b"0")) + 1).encode()
            if row.get("v", b"0").decode() != str(args[0]):
                return 0
            row["v"] = str(args[1]).encode()
            row["s"] = str(args[2]).encode()
            return 1

        return cas

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(client: FakeRedis, clock: Clock, **kw: Any) -> RedisBreakerStore:
    return RedisBreakerStore(client=client, retry_interval=5.0, monotonic=clock, **kw)


def test_stores_implement_the_protocol() -> None:
    assert isinstance(InMemoryBreakerStore(), BreakerStore)
    assert isinstance(make(FakeRedis(), Clock()), BreakerStore)


def test_state_is_shared_between_two_stores_on_one_redis() -> None:
    client, clock = FakeRedis(), Clock()
    cfg = BreakerConfig(window_size=4, minimum_calls=2)
    a = CircuitBreaker("x", cfg, store=make(client, clock), clock=clock)
    b = CircuitBreaker("x", cfg, store=make(client, clock), clock=clock)
    for _ in range(2):
        with pytest.raises(TimeoutError):
            a.call(_timeout)
    with pytest.raises(CircuitOpenError):
        b.call(lambda: 1)
    assert b.snapshot().state is CircuitState.OPEN


def test_falls_back_to_local_state_and_recovers() -> None:
    client, clock = FakeRedis(), Clock()
    events: list[BreakerEvent] = []
    store = make(client, clock)
    breaker = CircuitBreaker(
        "y",
        BreakerConfig(window_size=4, minimum_calls=2),
        store=store,
        clock=clock,
        listeners=[events.append],
    )
    breaker.call(lambda: 1)
    client.down = True
    assert breaker.call(lambda: 2) == 2  # no request lost
    snap = breaker.snapshot()
    assert snap.store_degraded and snap.calls == 2  # local state seeded from the last read
    assert [e.kind for e in events] == ["store_fallback"]
    client.down = False
    assert breaker.call(lambda: 3) == 3  # still local until retry_interval passes
    assert store.degraded
    clock.now += 5
    assert breaker.call(lambda: 4) == 4
    assert not store.degraded
    assert [e.kind for e in events] == ["store_fallback", "store_recovered"]
    assert breaker.snapshot().store_degraded is False


def test_compare_and_set_retries_on_conflict_and_gives_up() -> None:
    client, clock = FakeRedis(), Clock()
    store = make(client, clock, max_conflicts=3)
    breaker = CircuitBreaker("z", BreakerConfig(), store=store, clock=clock)
    client.steal = 2
    breaker.call(lambda: 1)
    assert not store.degraded and breaker.snapshot().calls == 1
    client.steal = 10
    assert breaker.call(lambda: 1) == 1  # conflicts exhausted: local state, still served
    assert store.degraded
    store.clear("z")
    assert store.key("z") not in client.data


def _timeout() -> None:
    raise TimeoutError
