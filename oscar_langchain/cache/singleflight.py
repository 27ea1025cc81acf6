"""Single-flight: concurrent calls with the same key share one execution.

The first caller (the leader) runs the function; callers that arrive while it runs
wait for its result instead of running it again. The lock guards only the table of
flights, never the call itself. If an async leader is cancelled, a waiting caller
takes over as the new leader rather than inheriting the cancellation.

Example:
    >>> flight = SingleFlight()
    >>> flight.do("k", lambda: 42)
    (42, False)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

__all__ = ["SingleFlight"]

T = TypeVar("T")


class _Call:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class _LeaderGone(Exception):
    """The async leader was cancelled; a follower should lead instead."""


class SingleFlight:
    """Deduplicates concurrent identical calls, in threads and in asyncio tasks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call] = {}
        self._futures: dict[tuple[int, Hashable], asyncio.Future[Any]] = {}

    def do(self, key: Hashable, fn: Callable[[], T]) -> tuple[T, bool]:
        """Run ``fn`` once for concurrent callers of ``key``; returns ``(value, shared)``."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.value, True
        try:
            call.value = fn()
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
        return call.value, False

    async def ado(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Async :meth:`do`: ``fn`` is awaited once per flight of concurrent tasks."""
        loop_key = (id(asyncio.get_running_loop()), key)
        while True:
            future = self._futures.get(loop_key)
            if future is None:
                break
            try:
                return await asyncio.shield(future), True
            except _LeaderGone:
                continue
        future = asyncio.get_running_loop().create_future()
        self._futures[loop_key] = future
        try:
            value = await fn()
        except asyncio.CancelledError:
            future.set_exception(_LeaderGone())
            raise
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(value)
            return value, False
        finally:
            del self._futures[loop_key]
            if future.done() and not future.cancelled():
                future.exception()  # mark retrieved: no "never retrieved" warning
