"""Error model: one exception hierarchy and a classifier for LLM client errors.

Every error this package raises is an :class:`OscarError`. Errors that stand for
several failures keep all of them (``.errors`` or ``.attempts``).

:func:`classify_error` tells, for any exception an LLM client may raise (openai,
anthropic, httpx, asyncio time-outs, ...), what kind of failure it is: whether it is
worth retrying, whether it should count against a circuit breaker, and the
``Retry-After`` a rate limit asked for. It is duck-typed on status codes, error codes
and class names, so no client library has to be installed.

Example:
    >>> from oscar_langchain.errors import classify_error
    >>> classify_error(TimeoutError("read timed out")).kind
    <ErrorKind.TIMEOUT: 'timeout'>
    >>> classify_error(TimeoutError()).retryable
    True
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "AttemptRecord",
    "CacheError",
    "CircuitOpenError",
    "ConfigurationError",
    "EnsembleError",
    "ErrorClassification",
    "ErrorKind",
    "FailoverError",
    "OscarError",
    "RetrievalError",
    "RouterError",
    "SafeResult",
    "StaleEntryError",
    "TokenizerError",
    "UnknownModelError",
    "asafe_execute",
    "classify_error",
    "safe_execute",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class OscarError(Exception):
    """Base class of every error raised by oscar-langchain."""


class ConfigurationError(OscarError, ValueError):
    """An argument or a configuration value is invalid; the message names the field."""

    def __init__(self, field_name: str, problem: str) -> None:
        self.field = field_name
        self.problem = problem
        super().__init__(f"{field_name}: {problem}")


class TokenizerError(OscarError):
    """A tokenizer could not be built (missing or corrupted BPE file, unknown encoding)."""


class UnknownModelError(OscarError, LookupError):
    """A model is not in the model registry and the caller chose no fallback."""

    def __init__(self, model: str, known: Sequence[str] = ()) -> None:
        self.model = model
        hint = f"; known models include {', '.join(sorted(known)[:8])}" if known else ""
        super().__init__(
            f"model {model!r} is not in the model registry{hint}. Register it with "
            "ModelRegistry.register(...) or pass an explicit fallback."
        )


class RouterError(OscarError):
    """No route could serve a request; ``rejections`` maps route name to reason."""

    def __init__(self, message: str, rejections: Mapping[str, str] | None = None) -> None:
        self.rejections = dict(rejections or {})
        super().__init__(message)


class CircuitOpenError(OscarError):
    """A call was rejected because the circuit breaker guarding it is open."""

    def __init__(self, name: str, state: str, retry_after: float | None = None) -> None:
        self.name = name
        self.state = state
        self.retry_after = retry_after
        wait = f"; next probe in {retry_after:.3f}s" if retry_after is not None else ""
        super().__init__(f"circuit {name!r} is {state}{wait}")


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a failover: which candidate, what happened and how long it took."""

    candidate: str
    attempt: int
    error: BaseException
    classification: ErrorClassification
    duration: float


class FailoverError(OscarError):
    """Every candidate failed; ``attempts`` keeps each attempt in order."""

    def __init__(self, message: str, attempts: Sequence[AttemptRecord]) -> None:
        self.attempts = list(attempts)
        self.errors = [a.error for a in self.attempts]
        lines = [message] + [
            f"  {a.candidate}#{a.attempt}: {a.classification.kind.value}: {a.error!r}"
            for a in self.attempts
        ]
        super().__init__("\n".join(lines))


class EnsembleError(OscarError):
    """Too few members of an ensemble or orchestration succeeded; ``errors`` keeps all."""

    def __init__(self, message: str, errors: Mapping[str, BaseException]) -> None:
        self.errors = dict(errors)
        super().__init__(f"{message}: " + "; ".join(f"{k}: {v!r}" for k, v in self.errors.items()))


class CacheError(OscarError):
    """A cache backend failed or holds an entry that cannot be read."""


class StaleEntryError(CacheError):
    """A cached entry that cannot answer this caller, though it reads fine.

    Its output type is not one the caller registered, or it no longer validates against
    that type (the schema changed). Caches serve it as a miss, count it in
    ``stats()["stale"]`` and overwrite it with the recomputed answer.
    """


class RetrievalError(OscarError):
    """A retriever or index operation failed (bad query, unknown id, corrupt index)."""


class ErrorKind(str, enum.Enum):
    """What kind of failure an exception stands for."""

    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    SERVER = "server"
    CONTEXT_LENGTH = "context_length"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    CIRCUIT_OPEN = "circuit_open"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


_RETRYABLE = frozenset(
    {ErrorKind.RATE_LIMIT, ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.SERVER}
)
# UNKNOWN counts against a breaker: an unexplained failure of a backend is still a failure.
_COUNTS_AS_FAILURE = _RETRYABLE | {ErrorKind.UNKNOWN}


@dataclass(frozen=True)
class ErrorClassification:
    """The classifier's verdict on one exception."""

    kind: ErrorKind
    status_code: int | None = None
    retry_after: float | None = None
    detail: str = field(default="", compare=False)

    @property
    def retryable(self) -> bool:
        """Whether retrying the same call may succeed (rate limits, time-outs, 5xx...)."""
        return self.kind in _RETRYABLE

    @property
    def counts_as_failure(self) -> bool:
        """Whether a circuit breaker should count this against the backend."""
        return self.kind in _COUNTS_AS_FAILURE

    @property
    def is_rate_limit(self) -> bool:
        """Whether the backend asked us to slow down."""
        return self.kind is ErrorKind.RATE_LIMIT

    @property
    def is_context_length(self) -> bool:
        """Whether the prompt overflowed the model's context window."""
        return self.kind is ErrorKind.CONTEXT_LENGTH


_CONTEXT_PATTERNS = re.compile(
    r"context[_ ]length|maximum context|context window|too many tokens|prompt is too long"
    r"|exceeds? the (?:maximum|max)|input is too long|reduce the length|context size"
    r"|exceed_context",
    re.IGNORECASE,
)
_TIMEOUT_NAMES = ("timeout", "timedout")
_CONNECTION_NAMES = (
    "connectionerror",
    "connecterror",
    "apiconnectionerror",
    "remoteprotocolerror",
    "readerror",
    "writeerror",
    "networkerror",
    "serverdisconnected",
    "incompleteread",
    "chunkedencodingerror",
)
_NAME_KINDS: tuple[tuple[str, ErrorKind], ...] = (
    ("ratelimit", ErrorKind.RATE_LIMIT),
    ("authentication", ErrorKind.AUTH),
    ("permissiondenied", ErrorKind.AUTH),
    ("internalserver", ErrorKind.SERVER),
    ("serviceunavailable", ErrorKind.SERVER),
    ("overloaded", ErrorKind.SERVER),
    ("badrequest", ErrorKind.BAD_REQUEST),
    ("unprocessable", ErrorKind.BAD_REQUEST),
    ("notfound", ErrorKind.NOT_FOUND),
)


def _status_code(exc: BaseException) -> int | None:
    for holder in (exc, getattr(exc, "response", None)):
        for attr in ("status_code", "status", "http_status"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    return None


def _headers(exc: BaseException) -> Mapping[str, str]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
    if headers is None:
        return {}
    try:
        return {str(k).lower(): str(v) for k, v in dict(headers).items()}
    except (TypeError, ValueError):
        return {}


def _retry_after(exc: BaseException) -> float | None:
    headers = _headers(exc)
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000.0)
        except ValueError:
            pass
    if "retry-after" in headers:
        try:
            return max(0.0, float(headers["retry-after"]))
        except ValueError:
            return None  # an HTTP date: callers fall back to their own backoff
    value = getattr(exc, "retry_after", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(0.0, float(value))
    return None


def _error_code(exc: BaseException) -> str:
    """The error's ``code`` and ``type`` fields (attribute or JSON body), space-joined."""
    parts = [getattr(exc, "code", None), getattr(exc, "type", None)]
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            parts += [inner.get("code"), inner.get("type")]
    return " ".join(str(p) for p in parts if p)


def _classify_one(exc: BaseException) -> ErrorClassification | None:
    if isinstance(exc, CircuitOpenError):
        return ErrorClassification(ErrorKind.CIRCUIT_OPEN, retry_after=exc.retry_after)
    if isinstance(exc, asyncio.CancelledError):
        return ErrorClassification(ErrorKind.CANCELLED)
    name = type(exc).__name__.lower()
    message = str(exc)
    code = _error_code(exc)
    status = _status_code(exc)
    if _CONTEXT_PATTERNS.search(code) or (
        (status in (400, 413, 422) or "badrequest" in name) and _CONTEXT_PATTERNS.search(message)
    ):
        return ErrorClassification(ErrorKind.CONTEXT_LENGTH, status, detail=message[:200])
    if isinstance(exc, TimeoutError) or any(t in name for t in _TIMEOUT_NAMES) or status == 408:
        return ErrorClassification(ErrorKind.TIMEOUT, status, detail=message[:200])
    if status is not None:
        if status == 429:
            return ErrorClassification(ErrorKind.RATE_LIMIT, status, _retry_after(exc), message)
        if status >= 500:
            return ErrorClassification(ErrorKind.SERVER, status, _retry_after(exc), message[:200])
        if status in (401, 403):
            return ErrorClassification(ErrorKind.AUTH, status, detail=message[:200])
        if status == 404:
            return ErrorClassification(ErrorKind.NOT_FOUND, status, detail=message[:200])
        if 400 <= status < 500:
            return ErrorClassification(ErrorKind.BAD_REQUEST, status, detail=message[:200])
    for fragment, kind in _NAME_KINDS:
        if fragment in name:
            return ErrorClassification(kind, status, _retry_after(exc), message[:200])
    if isinstance(exc, ConnectionError) or any(n in name for n in _CONNECTION_NAMES):
        return ErrorClassification(ErrorKind.CONNECTION, status, detail=message[:200])
    return None


def classify_error(exc: BaseException) -> ErrorClassification:
    """Classify an exception from any LLM client.

    The exception itself is examined first, then its ``__cause__``/``__context__`` chain
    (clients often wrap an ``httpx`` error), so a time-out wrapped in a ``RuntimeError``
    is still a time-out.

    Args:
        exc: the exception to classify.

    Returns:
        The classification; ``ErrorKind.UNKNOWN`` when nothing matched.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        verdict = _classify_one(current)
        if verdict is not None:
            return verdict
        current = current.__cause__ or current.__context__
    return ErrorClassification(ErrorKind.UNKNOWN, detail=str(exc)[:200])


@dataclass(frozen=True)
class SafeResult(Generic[T]):
    """Outcome of :func:`safe_execute`: the value, or the error with its classification."""

    value: T | None
    error: BaseException | None = None
    classification: ErrorClassification | None = None
    used_fallback: bool = False

    @property
    def ok(self) -> bool:
        """Whether the call itself succeeded (a fallback value does not count)."""
        return self.error is None

    def unwrap(self) -> T:
        """Return the value (the fallback's, if one was used) or re-raise the error."""
        if self.error is not None and not self.used_fallback:
            raise self.error
        return self.value  # type: ignore[return-value]


def _failed(
    exc: Exception, fallback: Callable[[Exception, ErrorClassification], T] | None
) -> SafeResult[T]:
    verdict = classify_error(exc)
    logger.warning("safe_execute caught %s (%s)", type(exc).__name__, verdict.kind.value)
    if fallback is None:
        return SafeResult(None, exc, verdict)
    return SafeResult(fallback(exc, verdict), exc, verdict, used_fallback=True)


def safe_execute(
    func: Callable[..., T],
    *args: Any,
    fallback: Callable[[Exception, ErrorClassification], T] | None = None,
    **kwargs: Any,
) -> SafeResult[T]:
    """Call ``func(*args, **kwargs)`` and never raise an ``Exception`` from it.

    The failure is not hidden: the result carries the error and its classification,
    and it is logged. With ``fallback``, its return value (given the error and its
    classification) becomes the result's value and ``used_fallback`` is set.

    Example:
        >>> r = safe_execute(int, "12")
        >>> r.ok, r.value
        (True, 12)
        >>> r = safe_execute(int, "x", fallback=lambda exc, verdict: -1)
        >>> r.ok, r.value, r.used_fallback
        (False, -1, True)
    """
    try:
        return SafeResult(func(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - the point of safe_execute; the error is kept
        return _failed(exc, fallback)


async def asafe_execute(
    func: Callable[..., Awaitable[T]],
    *args: Any,
    fallback: Callable[[Exception, ErrorClassification], T] | None = None,
    **kwargs: Any,
) -> SafeResult[T]:
    """Async form of :func:`safe_execute`; cancellation is never swallowed."""
    try:
        return SafeResult(await func(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - the point of asafe_execute; the error is kept
        return _failed(exc, fallback)
