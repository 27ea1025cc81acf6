"""Loopback helpers: polling with an injected clock (no sleeps, no sockets)."""

from __future__ import annotations

from oscar_langchain._net import http_ok, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_wait_until_true_eventually():
    clock = FakeClock()
    answers = iter([False, False, True])
    assert wait_until(
        lambda: next(answers), timeout=5, interval=0.5, clock=clock, sleep=clock.sleep
    )
    assert clock.slept == [0.5, 0.5]


def test_wait_until_gives_up_at_the_deadline():
    clock = FakeClock()
    assert not wait_until(lambda: False, timeout=2, interval=0.5, clock=clock, sleep=clock.sleep)
    assert clock.now == 2.0


def test_http_ok_is_false_for_a_bad_url():
    assert http_ok("not-a-url") is False
