from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from oscar_langchain.errors import (
    AttemptRecord,
    CircuitOpenError,
    ConfigurationError,
    EnsembleError,
    ErrorClassification,
    ErrorKind,
    FailoverError,
    OscarError,
    RouterError,
    UnknownModelError,
    asafe_execute,
    classify_error,
    safe_execute,
)


class FakeResponse:
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class APIStatusError(Exception):
    """Shaped like openai's APIStatusError: .status_code, .response, .body."""

    def __init__(
        self, message: str, status: int, headers: dict[str, str] | None = None, body: Any = None
    ):
        super().__init__(message)
        self.status_code = status
        self.response = FakeResponse(status, headers)
        self.body = body


class RateLimitError(APIStatusError):
    pass


class APITimeoutError(Exception):
    pass


class APIConnectionError(Exception):
    pass


class HTTPStatusError(Exception):
    """Shaped like httpx.HTTPStatusError: the status lives on .response only."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = FakeResponse(status, headers)


class AnthropicOverloadedError(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "kind", "retryable", "counts"),
    [
        (RateLimitError("slow down", 429, {"retry-after": "7"}), ErrorKind.RATE_LIMIT, True, True),
        (APIStatusError("boom", 500), ErrorKind.SERVER, True, True),
        (HTTPStatusError(503), ErrorKind.SERVER, True, True),
        (APIStatusError("nope", 401), ErrorKind.AUTH, False, False),
        (APIStatusError("forbidden", 403), ErrorKind.AUTH, False, False),
        (APIStatusError("missing", 404), ErrorKind.NOT_FOUND, False, False),
        (APIStatusError("bad field", 400), ErrorKind.BAD_REQUEST, False, False),
        (APIStatusError("slow", 408), ErrorKind.TIMEOUT, True, True),
        (
            APIStatusError(
                "This model's maximum context length is 8192 tokens",
                400,
                body={"error": {"code": "context_length_exceeded"}},
            ),
            ErrorKind.CONTEXT_LENGTH,
            False,
            False,
        ),
        (
            APIStatusError("x", 400, body={"code": "context_length_exceeded"}),
            ErrorKind.CONTEXT_LENGTH,
            False,
            False,
        ),
        (
            APIStatusError(
                "Error code: 400",
                400,
                body={
                    "code": 400,
                    "message": "request (3009 tokens) exceeds the available context size (2048 tokens)",
                    "type": "exceed_context_size_error",
                },
            ),
            ErrorKind.CONTEXT_LENGTH,
            False,
            False,
        ),
        (APITimeoutError("Request timed out."), ErrorKind.TIMEOUT, True, True),
        (asyncio.TimeoutError(), ErrorKind.TIMEOUT, True, True),
        (TimeoutError("read"), ErrorKind.TIMEOUT, True, True),
        (APIConnectionError("Connection error."), ErrorKind.CONNECTION, True, True),
        (ConnectionResetError(104, "reset"), ErrorKind.CONNECTION, True, True),
        (AnthropicOverloadedError("overloaded"), ErrorKind.SERVER, True, True),
        (asyncio.CancelledError(), ErrorKind.CANCELLED, False, False),
        (CircuitOpenError("gpt", "open", 2.0), ErrorKind.CIRCUIT_OPEN, False, False),
        (ValueError("something else"), ErrorKind.UNKNOWN, False, True),
    ],
)
def test_classify(exc: BaseException, kind: ErrorKind, retryable: bool, counts: bool) -> None:
    verdict = classify_error(exc)
    assert verdict.kind is kind
    assert verdict.retryable is retryable
    assert verdict.counts_as_failure is counts


def test_retry_after_forms() -> None:
    assert classify_error(RateLimitError("x", 429, {"Retry-After": "7"})).retry_after == 7.0
    assert classify_error(RateLimitError("x", 429, {"retry-after-ms": "1500"})).retry_after == 1.5
    assert (
        classify_error(RateLimitError("x", 429, {"retry-after": "Wed, 21 Oct"})).retry_after is None
    )
    exc = RateLimitError("x", 429)
    exc.retry_after = 3  # type: ignore[attr-defined]
    verdict = classify_error(exc)
    assert verdict.is_rate_limit and verdict.retry_after == 3.0
    assert classify_error(CircuitOpenError("a", "open", 1.25)).retry_after == 1.25


def test_wrapped_cause_is_classified() -> None:
    try:
        try:
            raise TimeoutError("inner")
        except TimeoutError as inner:
            raise RuntimeError("wrapper") from inner
    except RuntimeError as outer:
        assert classify_error(outer).kind is ErrorKind.TIMEOUT
    cyclic = RuntimeError("a")
    other = RuntimeError("b")
    cyclic.__context__ = other
    other.__context__ = cyclic
    assert classify_error(cyclic).kind is ErrorKind.UNKNOWN


def test_bad_headers_are_ignored() -> None:
    exc = APIStatusError("x", 429)
    exc.response.headers = object()  # type: ignore[assignment]
    assert classify_error(exc).retry_after is None
    assert classify_error(Exception("e")).kind is ErrorKind.UNKNOWN


def test_error_types_keep_everything() -> None:
    verdict = classify_error(TimeoutError())
    attempts = [
        AttemptRecord("a", 1, TimeoutError("t"), verdict, 0.1),
        AttemptRecord("b", 1, ValueError("v"), verdict, 0.2),
    ]
    err = FailoverError("all failed", attempts)
    assert err.attempts == attempts and len(err.errors) == 2
    assert "a#1" in str(err) and "b#1" in str(err)
    ens = EnsembleError("too few", {"m1": ValueError("x"), "m2": KeyError("y")})
    assert set(ens.errors) == {"m1", "m2"}
    assert RouterError("none", {"r": "context"}).rejections == {"r": "context"}
    cfg = ConfigurationError("k", "must be > 0")
    assert isinstance(cfg, ValueError) and isinstance(cfg, OscarError) and cfg.field == "k"
    assert isinstance(UnknownModelError("m"), LookupError)
    assert "next probe" in str(CircuitOpenError("x", "open", 1.0))
    assert "next probe" not in str(CircuitOpenError("x", "forced_open"))


def test_safe_execute(caplog: pytest.LogCaptureFixture) -> None:
    ok = safe_execute(lambda a, b: a + b, 1, b=2)
    assert ok.ok and ok.unwrap() == 3
    with caplog.at_level(logging.WARNING):
        failed = safe_execute(int, "x")
    assert not failed.ok and isinstance(failed.error, ValueError)
    assert failed.classification is not None and failed.classification.kind is ErrorKind.UNKNOWN
    assert "safe_execute caught ValueError" in caplog.text
    with pytest.raises(ValueError):
        failed.unwrap()
    seen: list[ErrorKind] = []

    def fallback(exc: Exception, verdict: ErrorClassification) -> str:
        seen.append(verdict.kind)
        return "fallback"

    def timeout() -> str:
        raise TimeoutError

    result = safe_execute(timeout, fallback=fallback)
    assert result.used_fallback and result.unwrap() == "fallback" and seen == [ErrorKind.TIMEOUT]


async def test_asafe_execute() -> None:
    async def ok() -> int:
        return 1

    async def bad() -> int:
        raise ConnectionResetError

    assert (await asafe_execute(ok)).unwrap() == 1
    result = await asafe_execute(bad, fallback=lambda e, v: -1)
    assert result.value == -1 and result.classification is not None
    assert result.classification.kind is ErrorKind.CONNECTION

    async def cancelled() -> int:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await asafe_execute(cancelled)
