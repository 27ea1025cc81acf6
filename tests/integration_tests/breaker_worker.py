"""A separate OS process using a Redis-backed breaker (driven by test_breaker_redis.py).

Usage: python -m tests.integration_tests.breaker_worker URL NAMESPACE COMMAND [ARG] [START_AT]
  fail N          make N failing calls, print the state
  state           print the state and whether one call is admitted
  probe N T       wait until wall time T, ask for N permits (never reported), print how many
  hold            take one permit, print it, then hang until killed (dies mid-probe)
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

from oscar_langchain.breaker_store import RedisBreakerStore
from oscar_langchain.circuit_breaker import BreakerConfig, CircuitBreaker
from oscar_langchain.errors import CircuitOpenError

CONFIG = BreakerConfig(
    window_size=10,
    minimum_calls=5,
    open_duration=float(os.environ.get("OSCAR_TEST_OPEN_DURATION", "60")),
    half_open_max_calls=3,
)


def main(argv: list[str]) -> None:
    url, namespace, command = argv[:3]
    breaker = CircuitBreaker("backend", CONFIG, store=RedisBreakerStore(url, namespace=namespace))
    out: dict[str, object] = {}
    if command == "fail":
        for _ in range(int(argv[3])):
            with contextlib.suppress(TimeoutError, CircuitOpenError):
                breaker.call(_timeout)
    elif command == "state":
        try:
            breaker.call(lambda: None)
            out["admitted"] = True
        except CircuitOpenError:
            out["admitted"] = False
    elif command == "probe":
        start_at = float(argv[4])
        time.sleep(max(0.0, start_at - time.time()))
        admitted = 0
        for _ in range(int(argv[3])):
            try:
                breaker.acquire()
                admitted += 1
            except CircuitOpenError:
                pass
        out["admitted"] = admitted
    elif command == "hold":
        permit = breaker.acquire()
        print(json.dumps({"probe": permit.admission.probe, "lease": permit.admission.lease}))
        sys.stdout.flush()
        time.sleep(3600)  # killed by the test while "calling the backend"
    out["state"] = breaker.snapshot().state.value
    print(json.dumps(out))


def _timeout() -> None:
    raise TimeoutError("backend timed out")


if __name__ == "__main__":
    main(sys.argv[1:])
