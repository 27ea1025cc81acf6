"""A Redis breaker shared by two OS processes, on a real redis-server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda

from oscar_langchain.breaker_store import RedisBreakerStore
from oscar_langchain.circuit_breaker import (
    BreakerConfig,
    BreakerEvent,
    CircuitBreaker,
    CircuitState,
)
from oscar_langchain.errors import CircuitOpenError
from oscar_langchain.failover import FailoverRunnable, RetryPolicy
from tests._support.redis_server import RedisServer
from tests.integration_tests.breaker_worker import CONFIG

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]


def worker(
    url: str, namespace: str, *args: object, open_duration: float = 60
) -> subprocess.Popen[str]:
    env = {**os.environ, "OSCAR_TEST_OPEN_DURATION": str(open_duration)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration_tests.breaker_worker",
            url,
            namespace,
            *map(str, args),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    return json.loads(out.strip().splitlines()[-1])


def test_failures_in_one_process_open_it_in_the_other(redis_server: RedisServer) -> None:
    ns = f"test:{uuid.uuid4().hex}"
    assert result(worker(redis_server.url, ns, "state")) == {"admitted": True, "state": "closed"}
    assert result(worker(redis_server.url, ns, "fail", 5))["state"] == "open"
    other = result(worker(redis_server.url, ns, "state"))
    assert other == {"admitted": False, "state": "open"}


def test_half_open_admits_exactly_n_probes_across_processes(redis_server: RedisServer) -> None:
    ns = f"test:{uuid.uuid4().hex}"
    assert result(worker(redis_server.url, ns, "fail", 5, open_duration=1.0))["state"] == "open"
    start_at = time.time() + 4.0  # after the open second and both starts: probe together
    procs = [
        worker(redis_server.url, ns, "probe", 5, start_at, open_duration=1.0) for _ in range(2)
    ]
    admitted = [result(p)["admitted"] for p in procs]
    assert sum(admitted) == CONFIG.half_open_max_calls  # 3 cluster-wide, not 3 per process
    store = RedisBreakerStore(redis_server.url, namespace=ns)
    assert CircuitBreaker("backend", CONFIG, store=store).snapshot().probes_admitted == 3


def test_a_process_killed_mid_probe_does_not_block_probes_forever(
    redis_server: RedisServer,
) -> None:
    ns = f"test:{uuid.uuid4().hex}"
    assert result(worker(redis_server.url, ns, "fail", 5, open_duration=0.2))["state"] == "open"
    time.sleep(0.3)  # the open duration passes: the next permits are probes
    store = RedisBreakerStore(redis_server.url, namespace=ns)
    here = CircuitBreaker("backend", CONFIG, store=store)
    for _ in range(CONFIG.half_open_max_calls - 1):
        assert here.acquire().admission.probe  # probes in flight here
    holder = worker(redis_server.url, ns, "hold", open_duration=0.2)
    try:
        assert holder.stdout is not None
        taken = json.loads(holder.stdout.readline())  # the other process took the last slot
    finally:
        holder.kill()  # ... and dies mid-probe: its permit is never reported
        holder.wait(timeout=30)
    assert taken["probe"] is True
    lease_end = float(taken["lease"])
    assert lease_end == pytest.approx(time.time() + CONFIG.probe_timeout, abs=30)
    with pytest.raises(CircuitOpenError):
        here.acquire()  # every probe slot is taken, cluster-wide
    # once the leases run out (a shifted clock rather than a 120 s wait), probes go again
    later = CircuitBreaker("backend", CONFIG, store=store, clock=lambda: lease_end + 1)
    assert later.acquire().admission.probe
    assert later.snapshot().probes_admitted == 1


def test_keys_are_namespaced_and_expire(redis_server: RedisServer) -> None:
    import redis

    ns = f"test:{uuid.uuid4().hex}"
    store = RedisBreakerStore(redis_server.url, namespace=ns, ttl=30)
    CircuitBreaker("k", BreakerConfig(), store=store).call(lambda: 1)
    client = redis.Redis.from_url(redis_server.url)
    assert client.keys(f"{ns}:*") == [f"{ns}:k".encode()]
    assert 0 < client.pttl(f"{ns}:k") <= 30_000
    store.clear("k")
    assert client.keys(f"{ns}:*") == []


def test_killing_redis_mid_run_loses_no_request(own_redis_server: RedisServer) -> None:
    events: list[BreakerEvent] = []
    store = RedisBreakerStore(own_redis_server.url, retry_interval=0.05, socket_timeout=0.2)
    chain = FailoverRunnable(
        candidates=[
            RunnableLambda(lambda x: f"primary:{x}", name="primary"),
            RunnableLambda(lambda x: f"backup:{x}", name="backup"),
        ],
        breaker_store=store,
        breaker_listeners=[events.append],
        retry=RetryPolicy(max_attempts=1),
    )
    outputs = []
    degraded_seen = False
    for i in range(200):
        if i == 50:
            own_redis_server.stop()
        if i == 150:
            own_redis_server.start()
            time.sleep(0.1)  # let retry_interval pass so the store tries Redis again
        outputs.append(chain.invoke(i))
        degraded_seen = degraded_seen or chain.health()["primary"]["store_degraded"]
    assert outputs == [f"primary:{i}" for i in range(200)]
    assert degraded_seen
    kinds = [e.kind for e in events]
    assert "store_fallback" in kinds and "store_recovered" in kinds
    assert kinds.index("store_fallback") < kinds.index("store_recovered")
    snap = chain.health()["primary"]
    assert snap["store_degraded"] is False and snap["state"] == CircuitState.CLOSED.value
