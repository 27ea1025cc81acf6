"""Small loopback networking helpers shared by the local model server and the chaos server.

Example:
    >>> ticks = iter(range(100))
    >>> wait_until(lambda: next(ticks) >= 3, timeout=10, sleep=lambda s: None)
    True
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

__all__ = ["LOOPBACK", "free_port", "http_ok", "wait_until"]

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it).

    Another process may take it before you bind it; servers that can bind port 0
    themselves (the chaos server does) avoid that race.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether ``GET url`` answers 200 within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; return its last value."""
    deadline = clock() + timeout
    while True:
        if predicate():
            return True
        if clock() >= deadline:
            return False
        sleep(interval)
