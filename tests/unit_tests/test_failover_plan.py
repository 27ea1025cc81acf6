"""The failover decision core and its two drivers, with no LangChain and no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from oscar_langchain.circuit_breaker import BreakerConfig, CircuitBreaker, CircuitState
from oscar_langchain.errors import CircuitOpenError, ErrorKind, FailoverError
from oscar_langchain.failover_plan import (
    Answer,
    Attempt,
    FailoverPlan,
    aclose_then_settle,
    arun_plan,
    asettle,
    close_then_settle,
    run_plan,
    settle,
)
from oscar_langchain.failover_policy import RetryPolicy
from tests.unit_tests.failover_fakes import APIError, context_overflow

RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.25, jitter=0.0)


class Script:
    """A call that fails for the listed candidates (one error per call, in order)."""

    def __init__(self, **errors: list[Exception]) -> None:
        self.errors = errors
        self.calls: list[tuple[str, int]] = []

    def __call__(self, attempt: Attempt) -> str:
        self.calls.append((attempt.name, attempt.number))
        queue = self.errors.get(attempt.name, [])
        if queue:
            raise queue.pop(0)
        return attempt.name

    async def acall(self, attempt: Attempt) -> str:
        return self(attempt)


def test_retry_then_move_on_then_answer() -> None:
    script = Script(a=[APIError(500), APIError(503)])
    waits: list[float] = []
    plan = FailoverPlan(["a", "b"], retry=RETRY, clock=lambda: 0.0)
    answer = run_plan(plan, script, waits.append)
    assert (answer.output, answer.attempt.name, answer.permit) == ("b", "b", None)
    assert script.calls == [("a", 1), ("a", 2), ("b", 1)]
    assert waits == [0.25]
    assert plan.metadata(answer.attempt) == {
        "oscar.candidate": "b",
        "oscar.route": ["a", "b"],
        "oscar.attempts": 3,
    }


def test_async_driver_makes_the_same_decisions() -> None:
    waits: list[float] = []

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    script = Script(a=[APIError(500), APIError(503)])
    plan = FailoverPlan(["a", "b"], retry=RETRY)
    answer = asyncio.run(arun_plan(plan, script.acall, asleep))
    assert answer.output == "b" and waits == [0.25]
    assert script.calls == [("a", 1), ("a", 2), ("b", 1)]


def test_not_retried_errors_move_on_at_once_and_exhaustion_raises() -> None:
    script = Script(a=[APIError(401, "bad key")], b=[APIError(400, "bad schema")])
    plan = FailoverPlan(["a", "b"], retry=RETRY)
    with pytest.raises(FailoverError) as info:
        run_plan(plan, script, pytest.fail)
    assert [r.classification.kind for r in info.value.attempts] == [
        ErrorKind.AUTH,
        ErrorKind.BAD_REQUEST,
    ]


def test_context_overflow_skips_candidates_with_no_larger_window() -> None:
    script = Script(small=[context_overflow()])
    plan = FailoverPlan(["small", "same", "big"], windows=[8192, 8192, 128000], retry=RETRY)
    assert run_plan(plan, script, pytest.fail).output == "big"
    assert script.calls == [("small", 1), ("big", 1)]


def test_admit_skips_and_moves_on_can_stop_failover() -> None:
    plan = FailoverPlan(["a", "b", "c"], admit=lambda i: "over budget" if i == 0 else None)
    assert run_plan(plan, Script(), pytest.fail).output == "b"
    assert plan.skipped == {"a": "over budget"}

    strict = FailoverPlan(["a", "b"], moves_on=lambda verdict: verdict.retryable)
    with pytest.raises(APIError, match="bad key"):  # the candidate's own error, not FailoverError
        run_plan(strict, Script(a=[APIError(401, "bad key")]), pytest.fail)
    assert len(strict.route.attempts) == 1

    nobody = FailoverPlan(["a"], admit=lambda i: "no room")
    with pytest.raises(FailoverError, match="none could be tried: a: no room"):
        run_plan(nobody, Script(), pytest.fail)


def test_breakers_guard_each_attempt_and_open_ones_are_skipped() -> None:
    now = [0.0]
    config = BreakerConfig(window_size=2, minimum_calls=2, open_duration=10)
    a, b = (CircuitBreaker(n, config, clock=lambda: now[0]) for n in "ab")
    a.trip()
    plan = FailoverPlan(["a", "b"], breakers=[a, b])
    answer = run_plan(plan, Script(), pytest.fail)
    assert answer.output == "b"
    assert isinstance(plan.route.attempts[0].error, CircuitOpenError)
    assert b.snapshot().calls == 1  # reported at once (not held)

    held = run_plan(FailoverPlan(["b"], breakers=[b]), Script(), pytest.fail, hold=True)
    assert b.snapshot().calls == 1  # the permit is still out
    settle(held, TimeoutError("stream cut"))
    assert b.snapshot().failures == 1
    assert b.state is CircuitState.OPEN  # 1 failure in 2 calls reached the 50% threshold
    c = CircuitBreaker("c", config)
    asyncio.run(asettle(run_plan(FailoverPlan(["c"], breakers=[c]), Script(), hold=True)))
    assert c.snapshot().calls == 1
    unguarded = Answer("x", Attempt(0, "u", 1, 0.0, None), None, 0.0)
    settle(unguarded)  # nothing to report


def test_a_failing_call_reports_to_its_breaker_and_interrupts_propagate() -> None:
    breaker = CircuitBreaker("a", BreakerConfig(window_size=4, minimum_calls=4))
    with pytest.raises(FailoverError):
        run_plan(FailoverPlan(["a"], breakers=[breaker]), Script(a=[TimeoutError()]))
    assert breaker.snapshot().failures == 1

    def interrupted(attempt: Attempt) -> None:
        raise KeyboardInterrupt

    plan = FailoverPlan(["a", "b"], breakers=[breaker, None])
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, interrupted)
    assert plan.route.attempts == [] and breaker.snapshot().calls == 1  # not counted


def test_driving_again_resumes_with_the_next_candidate() -> None:
    plan = FailoverPlan(["a", "b", "c"], retry=RETRY)
    first = run_plan(plan, Script(), pytest.fail)
    assert first.output == "a"
    # the caller's work after the answer failed (e.g. a stream cut mid-way): no retry of "a"
    assert plan.failed(first.attempt, APIError(502, "cut"), 0.5, retry=False)
    assert run_plan(plan, Script(), pytest.fail).output == "b"
    assert [r.candidate for r in plan.route.attempts] == ["a"]
    assert repr(plan.next()) == "Attempt('c', number=1, wait=0.0)"
    assert plan.next() is None


def test_retry_policy_next_wait_uses_retry_after_and_stops() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=1.0, jitter=0.0, max_retry_after=5)
    assert policy.next_wait(1, APIError(500)) == 1.0
    assert policy.next_wait(2, APIError(500)) == 2.0
    assert policy.next_wait(3, APIError(500)) is None  # attempts used up
    assert policy.next_wait(1, APIError(429, retry_after=4)) == 4.0
    assert policy.next_wait(1, APIError(429, retry_after=60)) is None  # too long: move on
    assert policy.next_wait(1, APIError(400)) is None


def test_retry_policy_run_and_arun() -> None:
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.5, jitter=0.0)
    seen: list[int] = []

    def flaky(n: int) -> int:
        seen.append(n)
        if n == 1:
            raise TimeoutError
        return n

    waits: list[float] = []
    assert policy.run(flaky, waits.append) == 2 and waits == [0.5]

    async def aflaky(n: int) -> int:
        return flaky(n)

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    assert asyncio.run(policy.arun(aflaky, asleep)) == 2
    with pytest.raises(ValueError):
        policy.run(lambda n: (_ for _ in ()).throw(ValueError("bad")), waits.append)


class _CloseFails:
    """A stream (not a generator) whose close raises."""

    def close(self) -> None:
        raise RuntimeError("close failed")

    async def aclose(self) -> None:
        raise RuntimeError("close failed")


def test_a_close_error_does_not_replace_the_streams_own_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    breaker = CircuitBreaker("c", BreakerConfig())
    failure = ConnectionError("stream cut")

    def answer() -> Answer[str]:
        return Answer("x", Attempt(0, "c", 1, 0.0, breaker), breaker.acquire(), 0.0)

    close_then_settle(answer(), _CloseFails(), failure)  # logged: failover goes on
    asyncio.run(aclose_then_settle(answer(), _CloseFails(), failure))
    assert caplog.text.count("closing a failed stream raised too") == 2
    with pytest.raises(RuntimeError, match="close failed"):  # the consumer stopped: raised
        close_then_settle(answer(), _CloseFails(), GeneratorExit())
    with pytest.raises(RuntimeError, match="close failed"):
        asyncio.run(aclose_then_settle(answer(), _CloseFails(), asyncio.CancelledError()))
    snap = breaker.snapshot()  # the failures were reported; the stopped streams released
    assert (snap.calls, snap.failures) == (2, 2)


class _SpyBreaker:
    """Records which report a settle used."""

    def __init__(self) -> None:
        self.reports: list[str] = []

    def report(self, permit: object, error: BaseException | None = None) -> None:
        self.reports.append("sync")

    async def areport(self, permit: object, error: BaseException | None = None) -> None:
        await asyncio.sleep(0)  # a shared store's round trip suspends
        self.reports.append("async")


def test_a_stopped_async_stream_awaits_its_report_when_a_loop_runs() -> None:
    spy = _SpyBreaker()

    def answer() -> Answer[str]:
        return Answer("x", Attempt(0, "c", 1, 0.0, spy), object(), 0.0)  # type: ignore[arg-type]

    asyncio.run(aclose_then_settle(answer(), object(), GeneratorExit()))  # consumer's aclose()
    asyncio.run(aclose_then_settle(answer(), object(), asyncio.CancelledError()))
    assert spy.reports == ["async", "async"]  # not a blocking call inside the event loop
    # Finalised with no loop to resume an await (a generator collected after its loop
    # ended): the sync report is made instead.
    finaliser = aclose_then_settle(answer(), object(), GeneratorExit())
    with pytest.raises(StopIteration):
        finaliser.send(None)
    assert spy.reports == ["async", "async", "sync"]
