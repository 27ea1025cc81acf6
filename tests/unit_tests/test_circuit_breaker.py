"""Every transition of the circuit breaker, on a fake clock (no sleeps)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oscar_langchain.breaker_machine import BreakerMachine
from oscar_langchain.breaker_store import InMemoryBreakerStore
from oscar_langchain.breaker_window import CountWindow, TimeWindow
from oscar_langchain.circuit_breaker import (
    BreakerConfig,
    BreakerEvent,
    CircuitBreaker,
    CircuitState,
)
from oscar_langchain.errors import CircuitOpenError, ConfigurationError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Status(Exception):
    def __init__(self, status_code: int, message: str = "error") -> None:
        super().__init__(message)
        self.status_code = status_code


def fail(exc: BaseException):
    def f() -> None:
        raise exc

    return f


def make(clock: FakeClock, **overrides: object) -> tuple[CircuitBreaker, list[BreakerEvent]]:
    events: list[BreakerEvent] = []
    cfg = dict(window_size=4, minimum_calls=2, open_duration=10.0)
    cfg.update(overrides)
    breaker = CircuitBreaker("t", BreakerConfig(**cfg), clock=clock, listeners=[events.append])  # type: ignore[arg-type]
    return breaker, events


def trip(breaker: CircuitBreaker, n: int = 2) -> None:
    for _ in range(n):
        with pytest.raises(TimeoutError):
            breaker.call(fail(TimeoutError("t")))


def transitions(events: list[BreakerEvent]) -> list[tuple[str | None, str]]:
    return [
        (e.from_state.value if e.from_state else None, e.state.value)
        for e in events
        if e.kind == "transition"
    ]


def test_closed_to_open_on_failure_rate() -> None:
    clock = FakeClock()
    breaker, events = make(clock)
    assert breaker.call(lambda: 1) == 1
    with pytest.raises(TimeoutError):
        breaker.call(fail(TimeoutError()))
    assert breaker.state is CircuitState.OPEN  # 1 of 2 failed = 0.5 >= 0.5
    assert transitions(events) == [("closed", "open")]


def test_minimum_calls_gate() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, minimum_calls=3)
    trip(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    trip(breaker, 1)
    assert breaker.state is CircuitState.OPEN


def test_open_rejects_without_calling_and_reports_retry_after() -> None:
    clock = FakeClock()
    breaker, events = make(clock)
    trip(breaker)
    called = []
    clock.advance(4)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: called.append(1))
    assert called == []
    assert info.value.retry_after == pytest.approx(6.0)
    assert [e.kind for e in events][-1] == "rejected"
    assert breaker.snapshot().time_to_next_probe == pytest.approx(6.0)


def test_half_open_probe_success_closes() -> None:
    clock = FakeClock()
    breaker, events = make(clock)
    trip(breaker)
    clock.advance(10)
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state is CircuitState.CLOSED
    assert transitions(events) == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert breaker.snapshot().calls == 0  # window reset on close


def test_half_open_probe_failure_reopens_with_growing_duration() -> None:
    clock = FakeClock()
    breaker, events = make(clock, open_duration_multiplier=2.0, max_open_duration=25.0)
    trip(breaker)
    clock.advance(10)
    trip(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    assert breaker.snapshot().time_to_next_probe == pytest.approx(20.0)
    clock.advance(20)
    trip(breaker, 1)
    assert breaker.snapshot().time_to_next_probe == pytest.approx(25.0)  # capped
    assert breaker.snapshot().consecutive_trips == 3
    assert transitions(events)[-1] == ("half_open", "open")


def test_half_open_admits_limited_probes() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, half_open_max_calls=2)
    trip(breaker)
    clock.advance(10)
    p1 = breaker.acquire()
    p2 = breaker.acquire()
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    assert p1.admission.probe and p2.admission.probe
    breaker.report(p1)
    assert breaker.state is CircuitState.HALF_OPEN  # waits for all probes
    breaker.report(p2)
    assert breaker.state is CircuitState.CLOSED


def test_half_open_probes_judged_by_rate() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, half_open_max_calls=4, failure_rate_threshold=0.5)
    trip(breaker)
    clock.advance(10)
    permits = [breaker.acquire() for _ in range(4)]
    breaker.report(permits[0], TimeoutError())
    for p in permits[1:]:
        breaker.report(p)
    assert breaker.state is CircuitState.CLOSED  # 1/4 < 0.5


def test_ignored_errors_neither_count_nor_trip_and_release_probe() -> None:
    clock = FakeClock()
    breaker, _ = make(clock)
    for code in (400, 401, 403):
        with pytest.raises(Status):
            breaker.call(fail(Status(code)))
    assert breaker.snapshot().calls == 0
    assert breaker.state is CircuitState.CLOSED
    trip(breaker)
    clock.advance(10)
    with pytest.raises(Status):
        breaker.call(fail(Status(400, "bad")))
    assert breaker.snapshot().probes_admitted == 0  # the probe slot was given back
    assert breaker.call(lambda: 1) == 1
    assert breaker.state is CircuitState.CLOSED


def test_rate_limits_and_5xx_count() -> None:
    clock = FakeClock()
    breaker, _ = make(clock)
    for code in (429, 503):
        with pytest.raises(Status):
            breaker.call(fail(Status(code)))
    assert breaker.state is CircuitState.OPEN


def test_custom_failure_policy() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "p",
        BreakerConfig(window_size=2, minimum_calls=1),
        clock=clock,
        failure_policy=lambda exc: isinstance(exc, KeyError),
    )
    with pytest.raises(TimeoutError):
        breaker.call(fail(TimeoutError()))
    assert breaker.state is CircuitState.CLOSED
    with pytest.raises(KeyError):
        breaker.call(fail(KeyError("k")))
    assert breaker.state is CircuitState.OPEN


def test_slow_calls_trip() -> None:
    clock = FakeClock()
    breaker, events = make(clock, slow_call_duration=1.0, slow_call_rate_threshold=1.0)

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    breaker.call(slow)
    assert breaker.state is CircuitState.CLOSED
    breaker.call(slow)
    assert breaker.state is CircuitState.OPEN
    assert "slow-call rate 1.00" in events[-1].reason


def test_forced_open_disabled_and_reset() -> None:
    clock = FakeClock()
    breaker, events = make(clock)
    breaker.force_open()
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: 1)
    assert info.value.state == "forced_open"
    clock.advance(1e6)
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: 1)  # forced open never times out
    breaker.disable()
    for _ in range(10):
        with pytest.raises(TimeoutError):
            breaker.call(fail(TimeoutError()))
    assert breaker.state is CircuitState.DISABLED
    assert breaker.snapshot().calls == 0
    breaker.reset()
    assert breaker.state is CircuitState.CLOSED
    breaker.trip()
    assert breaker.state is CircuitState.OPEN
    assert transitions(events) == [
        ("closed", "forced_open"),
        ("forced_open", "disabled"),
        ("disabled", "closed"),
        ("closed", "open"),
    ]


def test_stale_outcomes_from_previous_state_are_dropped() -> None:
    clock = FakeClock()
    breaker, _ = make(clock)
    early = breaker.acquire()
    trip(breaker)
    clock.advance(10)
    breaker.report(early, TimeoutError())  # started while CLOSED: ignored
    assert breaker.snapshot().state is CircuitState.OPEN
    assert breaker.call(lambda: 1) == 1
    assert breaker.state is CircuitState.CLOSED


def test_context_manager_sync_and_async() -> None:
    clock = FakeClock()
    breaker, _ = make(clock)
    with breaker:
        pass
    with pytest.raises(TimeoutError), breaker:
        raise TimeoutError
    assert breaker.state is CircuitState.OPEN

    async def main() -> None:
        other, _ = make(clock)
        async with other:
            pass
        with pytest.raises(TimeoutError):
            async with other:
                raise TimeoutError
        assert other.state is CircuitState.OPEN

    asyncio.run(main())


def test_acall_and_cancellation_is_not_a_failure() -> None:
    clock = FakeClock()
    breaker, _ = make(clock)

    async def ok() -> int:
        return 7

    async def cancelled() -> None:
        raise asyncio.CancelledError

    async def main() -> None:
        assert await breaker.acall(ok) == 7
        with pytest.raises(asyncio.CancelledError):
            await breaker.acall(cancelled)
        assert breaker.snapshot().calls == 1
        with pytest.raises(TimeoutError):
            await breaker.acall(fail_async)
        assert breaker.state is CircuitState.OPEN
        with pytest.raises(CircuitOpenError):
            await breaker.acall(ok)

    async def fail_async() -> None:
        raise TimeoutError

    asyncio.run(main())


def test_listener_errors_are_logged_not_raised_and_run_outside_lock() -> None:
    clock = FakeClock()
    store = InMemoryBreakerStore()
    seen: list[str] = []

    def listener(event: BreakerEvent) -> None:
        # re-entering the breaker from a listener would deadlock if the lock were held
        seen.append(breaker.snapshot().state.value)
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker(
        "l", BreakerConfig(window_size=2, minimum_calls=1), store=store, clock=clock
    )
    breaker.add_listener(listener)
    with pytest.raises(TimeoutError):
        breaker.call(fail(TimeoutError()))
    assert seen == ["open"]


def test_time_window_forgets_old_calls() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, window="time", window_size=10, time_buckets=10, minimum_calls=2)
    with pytest.raises(TimeoutError):
        breaker.call(fail(TimeoutError()))
    clock.advance(11)
    with pytest.raises(TimeoutError):
        breaker.call(fail(TimeoutError()))
    snap = breaker.snapshot()
    assert (snap.calls, snap.state) == (1, CircuitState.CLOSED)
    with pytest.raises(TimeoutError):
        breaker.call(fail(TimeoutError()))
    assert breaker.state is CircuitState.OPEN


def test_calls_are_not_serialised_by_a_lock() -> None:
    breaker = CircuitBreaker("c")
    barrier = threading.Barrier(5, timeout=5)
    results: list[int] = []

    def work(i: int) -> None:
        results.append(breaker.call(lambda: (barrier.wait(), i)[1]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # all five were inside the protected call at once, or the barrier would have broken
    assert sorted(results) == [0, 1, 2, 3, 4]


def test_snapshot_to_dict_and_repr() -> None:
    breaker = CircuitBreaker("s", clock=FakeClock())
    data = breaker.snapshot().to_dict()
    assert data["state"] == "closed"
    assert data["store"] == "InMemoryBreakerStore"
    assert "closed" in repr(breaker)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window", "sliding"),
        ("window_size", 0),
        ("minimum_calls", 0),
        ("failure_rate_threshold", 0),
        ("slow_call_duration", -1),
        ("open_duration", -1),
        ("open_duration_multiplier", 0.5),
        ("max_open_duration", 1),
        ("probe_timeout", 0),
    ],
)
def test_config_validation_names_field(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        BreakerConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field


def test_machine_json_round_trip() -> None:
    for cfg in (BreakerConfig(window_size=3), BreakerConfig(window="time", window_size=5)):
        m = BreakerMachine(cfg)
        p = m.acquire(1.0)
        m.record(1.0, p, failed=True, duration=0.1)
        back = BreakerMachine.from_json(m.to_json(), cfg)
        assert back.to_json() == m.to_json()
        assert back.counts(1.0) == m.counts(1.0)
    # a changed window size starts afresh instead of misreading the ring
    other = BreakerMachine.from_json(
        m.to_json(), BreakerConfig(window="time", window_size=5, time_buckets=3)
    )
    assert other.counts(1.0).calls == 0


def test_a_probe_that_never_reports_frees_its_slot_after_probe_timeout() -> None:
    clock = FakeClock()
    breaker, events = make(clock, probe_timeout=5.0)
    trip(breaker)
    clock.advance(10)
    lost = breaker.acquire()  # its process dies: this probe never reports
    assert lost.admission.probe
    with pytest.raises(CircuitOpenError) as info:
        breaker.acquire()
    assert info.value.retry_after == pytest.approx(5.0)
    assert breaker.snapshot().time_to_next_probe == pytest.approx(5.0)
    clock.advance(5)
    probe = breaker.acquire()  # the lease ran out: another probe may go
    assert probe.admission.probe and breaker.snapshot().probes_admitted == 1
    breaker.report(lost, TimeoutError("late"))  # a late outcome of an expired probe: dropped
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.report(probe)
    assert breaker.state is CircuitState.CLOSED
    assert transitions(events)[-1] == ("half_open", "closed")


def test_probes_never_expire_without_probe_timeout() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, probe_timeout=None, half_open_max_calls=2)
    trip(breaker)
    clock.advance(10)
    first, second = breaker.acquire(), breaker.acquire()
    clock.advance(10_000)
    with pytest.raises(CircuitOpenError) as info:
        breaker.acquire()
    assert info.value.retry_after is None
    breaker.report(first, Status(400, "bad request"))  # not a failure: the slot is given back
    assert breaker.snapshot().probes_admitted == 1
    third = breaker.acquire()
    breaker.report(second)
    breaker.report(third)
    assert breaker.state is CircuitState.CLOSED


def test_probe_leases_survive_json_and_old_states_let_probes_expire() -> None:
    cfg = BreakerConfig(window_size=4, minimum_calls=2, open_duration=10, probe_timeout=5)
    m = BreakerMachine(cfg)
    m.force(CircuitState.OPEN, 0.0, "test")
    probe = m.acquire(10.0)
    back = BreakerMachine.from_json(m.to_json(), cfg)
    assert back.probe_leases == [15.0] and not back.acquire(12.0).admitted
    assert back.record(12.0, probe, failed=False, duration=0.1)  # closes: the lease was there
    legacy = json.loads(m.to_json())
    del legacy["leases"]  # written by a version without leases
    old = BreakerMachine.from_json(json.dumps(legacy), cfg)
    assert old.acquire(10.0).admitted  # the unreported probe of the old state expired


# -- property tests: the running totals always equal the window's calls ----------------

calls = st.lists(
    st.tuples(st.floats(0, 3, allow_nan=False), st.booleans(), st.booleans()), max_size=60
)


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 8), steps=calls)
def test_count_window_totals_match_brute_force(
    size: int, steps: list[tuple[float, bool, bool]]
) -> None:
    window = CountWindow(size)
    history: list[tuple[bool, bool]] = []
    for _, failed, slow in steps:
        window.record(0.0, failed=failed, slow=slow)
        history.append((failed, slow))
        last = history[-size:]
        counts = window.counts(0.0)
        assert counts.calls == len(last)
        assert counts.failures == sum(f for f, _ in last)
        assert counts.slow == sum(s for _, s in last)


@settings(max_examples=150, deadline=None)
@given(seconds=st.sampled_from([1.0, 2.0, 5.0]), buckets=st.integers(1, 5), steps=calls)
def test_time_window_totals_match_brute_force(
    seconds: float, buckets: int, steps: list[tuple[float, bool, bool]]
) -> None:
    import math

    window = TimeWindow(seconds, buckets)
    width = seconds / buckets
    now = 0.0
    history: list[tuple[int, bool, bool]] = []
    for dt, failed, slow in steps:
        now += dt
        window.record(now, failed=failed, slow=slow)
        history.append((math.floor(now / width), failed, slow))
        current = math.floor(now / width)
        inside = [(f, s) for b, f, s in history if b > current - buckets]
        counts = window.counts(now)
        assert (counts.calls, counts.failures, counts.slow) == (
            len(inside),
            sum(f for f, _ in inside),
            sum(s for _, s in inside),
        )


@settings(max_examples=100, deadline=None)
@given(outcomes=st.lists(st.booleans(), max_size=40))
def test_breaker_snapshot_counts_equal_window_calls(outcomes: list[bool]) -> None:
    """While CLOSED, the breaker's counts are exactly the last window_size outcomes."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "h", BreakerConfig(window_size=5, minimum_calls=5, failure_rate_threshold=1.0), clock=clock
    )
    seen: list[bool] = []
    for failed in outcomes:
        if breaker.state is not CircuitState.CLOSED:
            break
        if failed:
            with pytest.raises(TimeoutError):
                breaker.call(fail(TimeoutError()))
        else:
            breaker.call(lambda: None)
        seen.append(failed)
        snap = breaker.snapshot()
        if snap.state is CircuitState.CLOSED:
            assert snap.calls == len(seen[-5:])
            assert snap.failures == sum(seen[-5:])
        else:
            assert seen[-5:] == [True] * 5
