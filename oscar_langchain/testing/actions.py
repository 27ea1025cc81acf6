"""What the chaos server does with one chat-completion request: small frozen actions.

An :class:`Action` is a plain value. Build one with the helpers (:func:`ok`, :func:`echo`,
:func:`proxy`, :func:`server_error`, :func:`rate_limit`, :func:`context_length`,
:func:`unauthorized`, :func:`slow`, :func:`hang`, :func:`reset`, :func:`cut_stream`,
:func:`malformed`) and give it to the server's script or to :class:`RandomActions`, which
picks one by seeded probability. Nothing here touches the network.

Example:
    >>> slow(0.5, then=cut_stream(2)).describe()
    'ok(cut after 2, delay 0.5s)'
    >>> picker = RandomActions([(ok(), 0.5), (server_error(503), 0.5)], seed=7)
    >>> [picker.next().kind for _ in range(4)]
    ['ok', 'ok', 'error', 'ok']
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from oscar_langchain.errors import ConfigurationError

__all__ = [
    "Action",
    "ActionKind",
    "RandomActions",
    "context_length",
    "cut_stream",
    "echo",
    "error_action",
    "error_body",
    "hang",
    "malformed",
    "ok",
    "proxy",
    "rate_limit",
    "reset",
    "server_error",
    "slow",
    "unauthorized",
]

ActionKind = Literal["ok", "echo", "proxy", "error", "hang", "reset", "malformed"]
_KINDS = ("ok", "echo", "proxy", "error", "hang", "reset", "malformed")
_ANSWERING = ("ok", "echo", "proxy")


@dataclass(frozen=True)
class Action:
    """One scripted behaviour of the chaos server.

    Attributes:
        kind: ``ok`` (fixed content), ``echo`` (the last user message), ``proxy`` (the
            upstream's answer), ``error`` (an HTTP error in OpenAI's JSON shape), ``hang``
            (accept the request, never answer), ``reset`` (TCP reset), ``malformed``
            (a 200 whose JSON or SSE data is broken).
        content: the answer of ``ok``.
        status: the HTTP status of ``error``.
        error_type: OpenAI ``error.type`` of ``error``.
        error_code: OpenAI ``error.code`` of ``error``.
        message: OpenAI ``error.message`` of ``error``.
        retry_after: ``Retry-After`` header (seconds) sent with ``error``.
        delay: seconds to wait before acting (a slow backend).
        hang_seconds: how long ``hang`` holds the connection before closing it.
        cut_after: for answering kinds, drop the connection after this many SSE chunks
            (streams) or half-way through the body (non-streams).

    Example:
        >>> rate_limit(2).status, rate_limit(2).retry_after
        (429, 2.0)
    """

    kind: ActionKind = "ok"
    content: str = "ok"
    status: int = 200
    error_type: str = ""
    error_code: str | None = None
    message: str = ""
    retry_after: float | None = None
    delay: float = 0.0
    hang_seconds: float = 60.0
    cut_after: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigurationError("kind", f"must be one of {_KINDS}, got {self.kind!r}")
        if self.kind == "error" and not 400 <= self.status <= 599:
            raise ConfigurationError("status", f"an error status is 400-599, got {self.status}")
        if self.delay < 0:
            raise ConfigurationError("delay", f"must be >= 0, got {self.delay}")
        if self.hang_seconds <= 0:
            raise ConfigurationError("hang_seconds", f"must be > 0, got {self.hang_seconds}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ConfigurationError("retry_after", f"must be >= 0, got {self.retry_after}")
        if self.cut_after is not None:
            if self.kind not in _ANSWERING:
                raise ConfigurationError("cut_after", f"only answers can be cut, not {self.kind}")
            if self.cut_after < 0:
                raise ConfigurationError("cut_after", f"must be >= 0, got {self.cut_after}")

    @property
    def answers(self) -> bool:
        """Whether this action produces a completion (possibly cut or delayed)."""
        return self.kind in _ANSWERING

    def describe(self) -> str:
        """A short human-readable label, e.g. ``error 429 (retry after 2s)``."""
        if self.kind == "error":
            label = f"error {self.status}"
            if self.error_code:
                label += f" {self.error_code}"
            if self.retry_after is not None:
                label += f" (retry after {self.retry_after:g}s)"
        elif self.kind == "hang":
            label = f"hang {self.hang_seconds:g}s"
        else:
            label = self.kind
        extras = []
        if self.cut_after is not None:
            extras.append(f"cut after {self.cut_after}")
        if self.delay:
            extras.append(f"delay {self.delay:g}s")
        return f"{label}({', '.join(extras)})" if extras else label


def ok(content: str = "ok") -> Action:
    """Answer with ``content``."""
    return Action("ok", content=content)


def echo() -> Action:
    """Answer with the content of the last user message."""
    return Action("echo")


def proxy() -> Action:
    """Forward the request to the server's upstream and relay its answer."""
    return Action("proxy")


def error_action(
    status: int,
    *,
    error_type: str = "server_error",
    code: str | None = None,
    message: str = "",
    retry_after: float | None = None,
) -> Action:
    """Any HTTP error in OpenAI's error JSON shape."""
    return Action(
        "error",
        status=status,
        error_type=error_type,
        error_code=code,
        message=message or f"chaos: HTTP {status}",
        retry_after=retry_after,
    )


def server_error(status: int = 500) -> Action:
    """A 5xx (500, 502, 503...) answer."""
    if not 500 <= status <= 599:
        raise ConfigurationError("status", f"a server error is 500-599, got {status}")
    return error_action(status, error_type="server_error", message=f"chaos: server error {status}")


def rate_limit(retry_after: float | None = 1.0) -> Action:
    """A 429 with a ``Retry-After`` header (none when ``retry_after`` is None)."""
    return error_action(
        429,
        error_type="rate_limit_exceeded",
        code="rate_limit_exceeded",
        message="chaos: rate limit reached, please retry later",
        retry_after=None if retry_after is None else float(retry_after),
    )


def context_length(limit: int = 2048) -> Action:
    """A 400 ``context_length_exceeded`` exactly as OpenAI words it."""
    return error_action(
        400,
        error_type="invalid_request_error",
        code="context_length_exceeded",
        message=(
            f"This model's maximum context length is {limit} tokens. However, your messages "
            "resulted in more tokens. Please reduce the length of the messages."
        ),
    )


def unauthorized() -> Action:
    """A 401 ``invalid_api_key``."""
    return error_action(
        401,
        error_type="invalid_request_error",
        code="invalid_api_key",
        message="chaos: incorrect API key provided",
    )


def slow(delay: float, then: Action | None = None) -> Action:
    """``then`` (default :func:`ok`) after waiting ``delay`` seconds."""
    return replace(then or ok(), delay=float(delay))


def hang(seconds: float = 60.0) -> Action:
    """Read the request, then send nothing for ``seconds`` (past any client time-out)."""
    return Action("hang", hang_seconds=float(seconds))


def reset() -> Action:
    """Read the request, then reset the TCP connection (RST) without answering."""
    return Action("reset")


def cut_stream(after: int = 1, then: Action | None = None) -> Action:
    """``then`` (default :func:`ok`) but the connection drops after ``after`` SSE chunks."""
    return replace(then or ok("one two three four five six seven eight"), cut_after=after)


def malformed() -> Action:
    """A 200 whose body (or SSE event) is not valid JSON."""
    return Action("malformed")


def error_body(action: Action) -> bytes:
    """The OpenAI-shaped JSON body of an ``error`` action."""
    payload: Mapping[str, Any] = {
        "error": {
            "message": action.message,
            "type": action.error_type,
            "param": "messages" if action.error_code == "context_length_exceeded" else None,
            "code": action.error_code,
        }
    }
    return json.dumps(payload).encode()


class RandomActions:
    """Picks an action at random by weight, reproducibly from ``seed``; thread-safe.

    Args:
        choices: ``(action, weight)`` pairs; weights need not sum to 1.
        seed: seed of the private random generator.

    Example:
        >>> picker = RandomActions([(ok(), 1.0)], seed=0)
        >>> picker.next().kind
        'ok'
    """

    def __init__(self, choices: Sequence[tuple[Action, float]], seed: int | None = 0) -> None:
        if not choices:
            raise ConfigurationError("choices", "needs at least one (action, weight) pair")
        for action, weight in choices:
            if weight < 0:
                raise ConfigurationError("choices", f"weight of {action.describe()} is negative")
        if sum(weight for _, weight in choices) <= 0:
            raise ConfigurationError("choices", "weights must not all be zero")
        self.actions = [action for action, _ in choices]
        self.weights = [float(weight) for _, weight in choices]
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def next(self) -> Action:
        """Draw the next action."""
        with self._lock:
            return self._rng.choices(self.actions, weights=self.weights, k=1)[0]
