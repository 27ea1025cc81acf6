"""Fault matrix: 200 requests through FailoverRunnable([flaky, healthy]) with the real
ChatOpenAI client over HTTP on 127.0.0.1; none is lost, and the breaker of the flaky
server opens during the fault and closes again once the server recovers."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from oscar_langchain.circuit_breaker import BreakerConfig, BreakerEvent, CircuitState
from oscar_langchain.failover import FailoverRunnable, RetryPolicy
from oscar_langchain.testing import (
    Action,
    ChaosServer,
    context_length,
    cut_stream,
    hang,
    ok,
    rate_limit,
    server_error,
    slow,
)
from tests._support.backends import local_model_server_factory  # noqa: F401 - fixture

pytest.importorskip("langchain_openai")

OPEN_SECONDS = 0.3
REQUESTS = 200
WORKERS = 8

# name, fault action (None = connection refused), streamed?, does it count against the breaker?
FAULTS: list[tuple[str, Action | None, bool, bool]] = [
    ("500", server_error(500), False, True),
    ("429-retry-after", rate_limit(0.05), False, True),
    ("timeout", slow(5), False, True),
    ("hang", hang(30), False, True),
    ("refused", None, False, True),
    ("cut-before-first-chunk", cut_stream(0), True, True),
    ("cut-after-first-chunk", cut_stream(2), True, True),
    ("400-context-length", context_length(), False, False),
]


class RecordingSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


def _ask(chain: FailoverRunnable, stream: bool, i: int) -> Any:
    prompt = f"question {i}"
    if not stream:
        return chain.invoke(prompt)
    merged = None
    for chunk in chain.stream(prompt):
        merged = chunk if merged is None else merged + chunk
    return merged


def _run(chain: FailoverRunnable, stream: bool, indices: range) -> list[Any]:
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda i: _ask(chain, stream, i), indices))


@pytest.mark.parametrize(("name", "fault", "stream", "counts"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_loses_no_request_and_breaker_opens_and_recovers(
    name: str, fault: Action | None, stream: bool, counts: bool
) -> None:
    events: list[BreakerEvent] = []
    sleep = RecordingSleep()
    with (
        ChaosServer(default=ok("flaky answer"), model="flaky") as flaky,
        ChaosServer(default=ok("healthy answer"), model="healthy") as healthy,
    ):
        port = flaky.port
        if fault is None:
            flaky.stop()  # connection refused
        else:
            flaky.set_default(fault)
        chain = FailoverRunnable(
            candidates=[
                flaky.chat_model(timeout=0.3) if fault is not None else _refused(port),
                healthy.chat_model(timeout=5),
            ],
            names=["flaky", "healthy"],
            breaker_config=BreakerConfig(
                window_size=10, minimum_calls=5, open_duration=OPEN_SECONDS
            ),
            breaker_listeners=[events.append],
            retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, jitter=0.0, max_retry_after=1),
            stream_policy="continue",
            sleep=sleep,
        )
        # phase 1: the flaky server is broken
        first = _run(chain, stream, range(REQUESTS // 2))
        if counts:
            assert chain.breakers["flaky"].state is CircuitState.OPEN
        # phase 2: it recovers; after the open duration a probe closes the breaker
        if fault is None:
            flaky = ChaosServer(default=ok("flaky answer"), model="flaky", port=port).start()
        else:
            flaky.set_default(ok("flaky answer"))
        time.sleep(OPEN_SECONDS + 0.05)
        second = _run(chain, stream, range(REQUESTS // 2, REQUESTS))
        flaky.stop()

    outputs = first + second
    assert len(outputs) == REQUESTS and all(o is not None for o in outputs)
    texts = [o.content for o in outputs]
    assert all(t.strip() for t in texts)  # every request got an answer
    assert all("healthy answer" in t or "flaky answer" in t for t in texts)
    transitions = [(e.from_state, e.state) for e in events if e.kind == "transition"]
    if counts:
        assert (CircuitState.CLOSED, CircuitState.OPEN) in transitions
        assert (CircuitState.HALF_OPEN, CircuitState.CLOSED) in transitions
        # calls skipped while open never reached the flaky server
        assert sum(o.response_metadata["oscar.candidate"] == "healthy" for o in first) >= 40
    else:
        assert transitions == []  # a context overflow is the prompt's fault, not the server's
        assert all(o.response_metadata["oscar.candidate"] == "healthy" for o in first)
    assert chain.breakers["flaky"].state is CircuitState.CLOSED
    assert texts[-1].endswith("flaky answer")  # recovered: traffic is back on the primary
    if name == "429-retry-after":
        assert 0.05 in sleep.waits  # the server's Retry-After was honoured
    if name == "cut-after-first-chunk":
        cut = [o for o in first if o.response_metadata["oscar.route"] == ["flaky", "healthy"]]
        # the partial answer was kept and the healthy server only sent the continuation
        # (a reset may also lose the first word in flight, leaving only the empty role chunk)
        assert cut and all(o.content.endswith("healthy answer") for o in cut)
        assert any(len(o.content) > len("healthy answer") for o in cut)


def _refused(port: int) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model="flaky",
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key="x",
        max_retries=0,
        timeout=0.3,
    )


@pytest.mark.local_model
def test_local_model_killed_mid_run_loses_no_request(
    local_model_server_factory: Any,  # noqa: F811 - the fixture imported above
) -> None:
    """The primary is a real llama-server; the test kills it after a few requests."""
    events: list[BreakerEvent] = []
    primary = local_model_server_factory()
    with ChaosServer(default=ok("healthy answer"), model="healthy") as healthy:
        chain = FailoverRunnable(
            candidates=[
                primary.chat_model(max_tokens=4, timeout=30, max_retries=0),
                healthy.chat_model(timeout=5),
            ],
            names=["local", "healthy"],
            breaker_config=BreakerConfig(window_size=10, minimum_calls=3, open_duration=60),
            breaker_listeners=[events.append],
            retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, jitter=0.0),
        )
        outputs = [chain.invoke(f"Say hi {i}") for i in range(5)]
        primary.stop()  # killed mid-run
        outputs += [chain.invoke(f"Say hi {i}") for i in range(5, 40)]
    assert len(outputs) == 40 and all(isinstance(o.content, str) for o in outputs)
    assert [o.response_metadata["oscar.candidate"] for o in outputs[:5]] == ["local"] * 5
    assert all(o.response_metadata["oscar.candidate"] == "healthy" for o in outputs[5:])
    assert chain.breakers["local"].state is CircuitState.OPEN
    assert any(e.kind == "transition" and e.state is CircuitState.OPEN for e in events)
