"""Secret redaction for anything the callbacks record (messages, span attributes).

Pure functions: API keys (``sk-...``, ``AKIA...``, ``xox...``, ``ghp_...``), bearer
tokens, ``Authorization`` headers and ``api_key=...`` pairs are replaced by
``[REDACTED]``; attribute keys that name a secret are dropped altogether.

Example:
    >>> redact("401 for key sk-abcdefghijklmnopqrstuv, header Authorization: Bearer xyz123")
    '401 for key [REDACTED], header Authorization: [REDACTED]'
    >>> is_secret_key("x-api-key"), is_secret_key("oscar.route")
    (True, False)
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "is_secret_key", "redact", "truncate"]

REDACTED = "[REDACTED]"

_SECRET_VALUE = re.compile(
    r"(?i)(?:authorization|proxy-authorization)\s*[:=]\s*(?:(?:bearer|basic|token)\s+)?[^\s,;\"']+"
    r"|(?i:bearer)\s+[A-Za-z0-9\-._~+/]+=*"
    r"|\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,}"
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"
    r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bAIza[0-9A-Za-z\-_]{30,}"
    r"|(?i:(?:api[_-]?key|secret|password|passwd|access[_-]?token|client[_-]?secret))"
    r"(?:\"|')?\s*[:=]\s*(?:\"|')?[^\s,;\"'}&]+"
)
_SECRET_KEY = re.compile(
    r"(?i)api[_-]?key|authori[sz]ation|secret|password|passwd|access[_-]?token|"
    r"refresh[_-]?token|cookie|credential|private[_-]?key"
)


def _replace(match: re.Match[str]) -> str:
    text = match.group(0)
    lowered = text.lower()
    if lowered.startswith(("authorization", "proxy-authorization")):
        head = re.match(r"(?i)(?:proxy-)?authorization\s*[:=]\s*", text)
        return (head.group(0) if head else "") + REDACTED
    for sep in ("=", ":"):
        if sep in text and not lowered.startswith(("bearer", "sk-")):
            name = text.split(sep, 1)[0]
            return f"{name}{sep}{REDACTED}"
    return REDACTED


def redact(text: str) -> str:
    """``text`` with every secret-looking token replaced by ``[REDACTED]``."""
    return _SECRET_VALUE.sub(_replace, text)


def is_secret_key(key: str) -> bool:
    """Whether an attribute/parameter named ``key`` holds a secret (never record it)."""
    return _SECRET_KEY.search(key) is not None


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marking the cut."""
    return text if len(text) <= limit else text[: max(0, limit - 14)] + "...[truncated]"
