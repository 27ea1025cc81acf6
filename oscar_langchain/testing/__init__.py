"""Test doubles with real I/O: an OpenAI-compatible chaos server for fault-injection tests.

Example:
    >>> from oscar_langchain.testing import ChaosServer, rate_limit, ok
    >>> ChaosServer([rate_limit(1), ok()]).pending
    2
"""

from oscar_langchain._net import free_port
from oscar_langchain.testing.actions import (
    Action,
    RandomActions,
    context_length,
    cut_stream,
    echo,
    error_action,
    hang,
    malformed,
    ok,
    proxy,
    rate_limit,
    reset,
    server_error,
    slow,
    unauthorized,
)
from oscar_langchain.testing.chaos_server import ChaosServer, RecordedRequest

__all__ = [
    "Action",
    "ChaosServer",
    "RandomActions",
    "RecordedRequest",
    "context_length",
    "cut_stream",
    "echo",
    "error_action",
    "free_port",
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
