"""OpenAI chat-completion wire format: bodies, SSE chunks and usage, as pure functions.

Example:
    >>> request = {"model": "m", "messages": [{"role": "user", "content": "hi there"}]}
    >>> body = completion_body(request, "hello", created=0)
    >>> body["choices"][0]["message"]["content"], body["usage"]["total_tokens"]
    ('hello', 3)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = [
    "answer_text",
    "completion_body",
    "count_words",
    "last_user_text",
    "prompt_words",
    "split_sse_events",
    "sse_chunks",
    "sse_event",
]

SSE_DONE = b"data: [DONE]\n\n"


def count_words(text: str) -> int:
    """The chaos server's token count: whitespace-separated words (cheap, deterministic)."""
    return len(text.split())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def last_user_text(request: Mapping[str, Any]) -> str:
    """The text of the last user message of a chat-completion request ('' if none)."""
    messages = request.get("messages") or []
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def prompt_words(request: Mapping[str, Any]) -> int:
    """Prompt size of a request in words, over every message."""
    messages = request.get("messages") or []
    return sum(count_words(_text_of(m.get("content"))) for m in messages if isinstance(m, Mapping))


def answer_text(request: Mapping[str, Any], content: str) -> tuple[str, str]:
    """``content`` truncated to the request's ``max_tokens`` words, with the finish reason."""
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    words = content.split(" ")
    if isinstance(limit, int) and limit >= 0 and count_words(content) > limit:
        return " ".join(words[:limit]), "length"
    return content, "stop"


def _usage(request: Mapping[str, Any], text: str) -> dict[str, int]:
    prompt = prompt_words(request)
    completion = count_words(text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_body(
    request: Mapping[str, Any], content: str, *, created: int, ident: str = "chatcmpl-chaos"
) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` answering ``request`` with ``content``."""
    text, finish = answer_text(request, content)
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": str(request.get("model") or "chaos"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": _usage(request, text),
    }


def sse_event(payload: Mapping[str, Any]) -> bytes:
    """One ``data: {...}`` server-sent event."""
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def sse_chunks(
    request: Mapping[str, Any], content: str, *, created: int, ident: str = "chatcmpl-chaos"
) -> list[bytes]:
    """Every SSE event of a streamed answer, ``[DONE]`` included.

    One event for the role, one per word, one with the finish reason, then one with the
    usage when the request asked for it (``stream_options.include_usage``).
    """
    text, finish = answer_text(request, content)
    model = str(request.get("model") or "chaos")

    def chunk(delta: Mapping[str, Any], finish_reason: str | None = None) -> bytes:
        return sse_event(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish_reason}],
            }
        )

    words = text.split(" ") if text else []
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
    events.append(chunk({}, finish))
    options = request.get("stream_options") or {}
    if isinstance(options, Mapping) and options.get("include_usage"):
        events.append(
            sse_event(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": _usage(request, text),
                }
            )
        )
    events.append(SSE_DONE)
    return events


def split_sse_events(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Split an upstream SSE body into events (blank-line separated blocks)."""
    pending: list[bytes] = []
    for line in lines:
        if line.strip():
            pending.append(line.rstrip(b"\r\n"))
            continue
        if pending:
            yield b"\n".join(pending) + b"\n\n"
            pending = []
    if pending:
        yield b"\n".join(pending) + b"\n\n"
