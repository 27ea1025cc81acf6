"""Pure parts of failover: the retry policy and the record of one failover run.

Nothing here imports LangChain. :class:`RetryPolicy` decides retries with tenacity's
stop and retry strategies, exponential backoff, jitter and ``Retry-After`` honoured;
:class:`FailoverRoute`
keeps the attempts of one request and decides which candidates remain eligible
after a context-length overflow. :mod:`oscar_langchain.failover_plan` drives
both for the sync and async paths alike.

Example:
    >>> policy = RetryPolicy(max_attempts=3, initial_backoff=1.0, jitter=0.0)
    >>> policy.should_retry(TimeoutError()), policy.should_retry(ValueError("bad"))
    (True, False)
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar, cast

from tenacity import RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.retry import retry_base
from tenacity.stop import stop_base

from oscar_langchain.errors import (
    AttemptRecord,
    ConfigurationError,
    ErrorClassification,
    FailoverError,
    classify_error,
)

__all__ = ["FailoverRoute", "RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one candidate is retried before moving on.

    Only retryable failures (time-outs, 5xx, connection errors, rate limits) are
    retried; bad requests, auth errors, context-length overflows and open breakers
    move on to the next candidate at once. A rate limit asking to wait longer than
    ``max_retry_after`` also moves on instead of waiting.

    Attributes:
        max_attempts: calls per candidate (1 = no retry).
        initial_backoff: first wait in seconds; doubles each retry.
        max_backoff: cap of the exponential wait.
        jitter: up to this many random seconds added to each wait.
        max_retry_after: longest ``Retry-After`` worth waiting for on this candidate.

    Example:
        >>> RetryPolicy(max_attempts=0)
        Traceback (most recent call last):
        ...
        oscar_langchain.errors.ConfigurationError: max_attempts: must be >= 1, got 0
    """

    max_attempts: int = 2
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.5
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts", f"must be >= 1, got {self.max_attempts}")
        for name in ("initial_backoff", "max_backoff", "jitter", "max_retry_after"):
            if getattr(self, name) < 0:
                raise ConfigurationError(name, f"must be >= 0, got {getattr(self, name)}")

    def should_retry(self, exc: BaseException) -> bool:
        """Whether the same candidate deserves another try after ``exc``."""
        verdict = classify_error(exc)
        if not verdict.retryable:
            return False
        return verdict.retry_after is None or verdict.retry_after <= self.max_retry_after

    def backoff(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based).

        Exponential backoff with jitter, and at least the error's ``Retry-After``.
        """
        wait = min(self.max_backoff, self.initial_backoff * 2.0 ** max(0, attempt - 1))
        wait += random.uniform(0.0, self.jitter)  # jitter, not crypto
        retry_after = classify_error(error).retry_after if error is not None else None
        return max(wait, retry_after) if retry_after is not None else wait

    @cached_property
    def _strategies(self) -> tuple[stop_base, retry_base]:
        return stop_after_attempt(self.max_attempts), retry_if_exception(self.should_retry)

    def next_wait(self, attempt: int, error: BaseException) -> float | None:
        """Seconds to wait before retrying after failed attempt ``attempt``, or ``None``.

        A pure decision: tenacity's stop (``stop_after_attempt``) and retry
        (``retry_if_exception``) strategies judge the attempt, then :meth:`backoff`
        gives the wait. ``None`` means: move on to the next candidate.

        Example:
            >>> policy = RetryPolicy(max_attempts=2, initial_backoff=0.5, jitter=0.0)
            >>> policy.next_wait(1, TimeoutError()), policy.next_wait(2, TimeoutError())
            (0.5, None)
        """
        state = RetryCallState(cast(Any, None), None, (), {})  # the strategies read no retryer
        state.attempt_number = attempt
        state.set_exception((type(error), error, error.__traceback__))
        stop, retry = self._strategies
        if stop(state) or not retry(state):
            return None
        return self.backoff(attempt, error)

    def run(self, attempt: Callable[[int], T], sleep: Callable[[float], None]) -> T:
        """``attempt(n)`` for n = 1, 2, ... until it succeeds or the policy gives up."""
        number = 1
        while True:
            try:
                return attempt(number)
            except Exception as exc:
                wait = self.next_wait(number, exc)
                if wait is None:
                    raise
            sleep(wait)
            number += 1

    async def arun(
        self, attempt: Callable[[int], Awaitable[T]], sleep: Callable[[float], Awaitable[None]]
    ) -> T:
        """Async form of :meth:`run`."""
        number = 1
        while True:
            try:
                return await attempt(number)
            except Exception as exc:
                wait = self.next_wait(number, exc)
                if wait is None:
                    raise
            await sleep(wait)
            number += 1


@dataclass
class FailoverRoute:
    """The attempts of one request through the candidates, and what they imply.

    Args:
        names: candidate names, in order.
        windows: each candidate's context window in tokens (``None`` if unknown).

    Example:
        >>> class BadRequestError(Exception): ...
        >>> overflow = BadRequestError("maximum context length is 8192 tokens")
        >>> route = FailoverRoute(["small", "big"], [8000, 128000])
        >>> verdict = route.record(0, 1, overflow, 0.1)
        >>> verdict.is_context_length, route.eligible(1), route.eligible(0)
        (True, True, False)
    """

    names: Sequence[str]
    windows: Sequence[int | None]
    attempts: list[AttemptRecord] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)
    overflowed: int | None = None

    def eligible(self, index: int) -> bool:
        """Whether candidate ``index`` may still help after any context overflow."""
        if self.overflowed is None:
            return True
        window = self.windows[index]
        return window is None or window > self.overflowed

    def record(
        self, index: int, attempt: int, error: BaseException, duration: float
    ) -> ErrorClassification:
        """Keep a failed attempt; remember the window a context overflow proves too small."""
        verdict = classify_error(error)
        self.attempts.append(
            AttemptRecord(self.names[index], attempt, error, verdict, max(0.0, duration))
        )
        self.visit(index)
        if verdict.is_context_length:
            window = self.windows[index]
            if window is not None:
                self.overflowed = max(self.overflowed or 0, window)
            elif self.overflowed is None:
                self.overflowed = 0  # unknown size: any other candidate may fit
        return verdict

    def visit(self, index: int) -> None:
        """Note that candidate ``index`` was tried (once per candidate in a row)."""
        name = self.names[index]
        if not self.tried or self.tried[-1] != name:
            self.tried.append(name)

    def metadata(self, index: int) -> dict[str, object]:
        """What the output's ``response_metadata`` tells about the route taken."""
        self.visit(index)
        return {
            "oscar.candidate": self.names[index],
            "oscar.route": list(self.tried),
            "oscar.attempts": len(self.attempts) + 1,
        }

    def error(self, message: str = "every failover candidate failed") -> FailoverError:
        """The error to raise when no candidate answered."""
        return FailoverError(message, self.attempts)
