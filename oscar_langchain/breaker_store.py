"""Where circuit breakers keep their state: in memory, or in Redis shared by processes.

A store applies a pure change (a function of a
:class:`~oscar_langchain.breaker_machine.BreakerMachine`) atomically and returns its
result. :class:`InMemoryBreakerStore` does it under a per-breaker lock held only
for the change itself (microseconds, never around the protected call).
:class:`RedisBreakerStore` reads the state, applies the change in Python and writes
it back with a Lua compare-and-set script on a version number, retrying on conflict,
so several processes share one breaker per backend: one process's failures open it
for all, and HALF_OPEN admits ``half_open_max_calls`` probes cluster-wide. Keys are
namespaced (``<namespace>:<name>``) and expire after ``ttl`` seconds without use.

When Redis fails, the Redis store falls back to a local in-memory state (seeded with
the last state it read), sets :attr:`RedisBreakerStore.degraded`, and tries Redis
again every ``retry_interval`` seconds; once Redis answers, the shared state is used
again. Breakers report both changes to their listeners and in ``snapshot()``.

Example:
    >>> from oscar_langchain.breaker_machine import BreakerConfig
    >>> store = InMemoryBreakerStore()
    >>> store.update("api", BreakerConfig(), lambda m: m.acquire(0.0).admitted)
    True
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from oscar_langchain.breaker_machine import BreakerConfig, BreakerMachine

__all__ = ["BreakerStore", "InMemoryBreakerStore", "RedisBreakerStore"]

logger = logging.getLogger(__name__)

R = TypeVar("R")

_CAS_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'v')
if (current or '0') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
"""Compare-and-set: write state ``ARGV[3]`` as version ``ARGV[2]`` if the stored
version is still ``ARGV[1]``; refresh the key's expiry (``ARGV[4]`` ms)."""


@runtime_checkable
class BreakerStore(Protocol):
    """Keeps breaker states by name and applies changes to them atomically."""

    @property
    def degraded(self) -> bool:
        """Whether the store is running on a fallback (e.g. Redis is unreachable)."""
        ...

    @property
    def shared(self) -> bool:
        """Whether the state is shared with other processes (needs a wall clock)."""
        ...

    def update(self, name: str, config: BreakerConfig, change: Callable[[BreakerMachine], R]) -> R:
        """Apply ``change`` to breaker ``name``'s state atomically; return its result."""
        ...

    async def aupdate(
        self, name: str, config: BreakerConfig, change: Callable[[BreakerMachine], R]
    ) -> R:
        """Async form of :meth:`update`."""
        ...


class InMemoryBreakerStore:
    """Breaker states in this process, one short lock per breaker.

    Example:
        >>> from oscar_langchain.breaker_machine import BreakerConfig
        >>> InMemoryBreakerStore().update("a", BreakerConfig(), lambda m: m.state.value)
        'closed'
    """

    degraded = False
    shared = False

    def __init__(self) -> None:
        self._machines: dict[str, BreakerMachine] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def slot(self, name: str, config: BreakerConfig) -> tuple[threading.Lock, BreakerMachine]:
        """Breaker ``name``'s lock and state: change the state only while holding the lock."""
        machine = self._machines.get(name)  # fast path: a dict read is atomic
        if machine is not None and (machine.config is config or machine.config == config):
            return self._locks[name], machine
        with self._guard:
            machine = self._machines.get(name)
            if machine is None or machine.config != config:
                machine = self._machines[name] = BreakerMachine(config)
                self._locks.setdefault(name, threading.Lock())
            return self._locks[name], machine

    def update(self, name: str, config: BreakerConfig, change: Callable[[BreakerMachine], R]) -> R:
        """Apply ``change`` under breaker ``name``'s lock (held for the change only)."""
        lock, machine = self.slot(name, config)
        with lock:
            return change(machine)

    async def aupdate(
        self, name: str, config: BreakerConfig, change: Callable[[BreakerMachine], R]
    ) -> R:
        """Same as :meth:`update`: the lock is held for microseconds, never across I/O."""
        return self.update(name, config, change)

    def seed(self, name: str, machine: BreakerMachine) -> None:
        """Replace breaker ``name``'s state (used when a shared store falls back here)."""
        with self._guard:
            self._machines[name] = machine
            self._locks.setdefault(name, threading.Lock())


def _import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - redis is installed in the dev env
        raise ImportError(
            "RedisBreakerStore needs the redis client: pip install oscar-langchain[redis]"
        ) from exc
    return redis


class RedisBreakerStore:
    """Breaker states in Redis, shared by every process using the same namespace.

    Args:
        url: Redis URL (ignored when ``client`` is given).
        client: an existing ``redis.Redis`` client.
        namespace: key prefix; breaker ``name`` lives at ``<namespace>:<name>``.
        ttl: seconds a key lives after its last write.
        retry_interval: while degraded, seconds between attempts to reach Redis again.
        socket_timeout: seconds before a Redis call counts as failed.
        max_conflicts: compare-and-set retries before this call uses local state.
        monotonic: clock for ``retry_interval`` (injectable for tests).

    Example:
        >>> store = RedisBreakerStore("redis://127.0.0.1:1/0", ttl=60)  # nothing connects yet
        >>> store.key("openai")
        'oscar:breaker:openai'
    """

    shared = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: Any | None = None,
        namespace: str = "oscar:breaker",
        ttl: float = 3600.0,
        retry_interval: float = 1.0,
        socket_timeout: float = 0.5,
        max_conflicts: int = 50,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        redis = _import_redis()
        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._client = client or redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        self._cas = self._client.register_script(_CAS_SCRIPT)
        self.namespace = namespace
        self.ttl_ms = int(ttl * 1000)
        self.retry_interval = retry_interval
        self.max_conflicts = max_conflicts
        self._monotonic = monotonic
        self._local = InMemoryBreakerStore()
        self._last_seen: dict[str, str] = {}
        self._flag = threading.Lock()
        self._degraded = False
        self._retry_at = 0.0
        self.last_error: BaseException | None = None

    @property
    def degraded(self) -> bool:
        """Whether Redis was unreachable at the last try (local state in use)."""
        return self._degraded

    def key(self, name: str) -> str:
        """The Redis key of breaker ``name``."""
        return f"{self.namespace}:{name}"

    def update(self, name: str, config: BreakerConfig, change: Callable[[BreakerMachine], R]) -> R:
        """Apply ``change`` to the shared state; on Redis failure, to the local one."""
        if self._degraded and self._monotonic() < self._retry_at:
            return self._local.update(name, config, change)
        try:
            result = self._update_shared(name, config, change)
        except self._redis_errors as exc:
            self._fall_back(name, config, exc)
            return self._local.update(name, config, change)
        if self._degraded:
            with self._flag:
                self._degraded = False
            logger.warning("redis breaker store recovered; using shared state again")
        return result

    async def aupdate(
        self, name: str, config: BreakerConfig, change: Callable[[BreakerMachine], R]
    ) -> R:
        """:meth:`update` in a worker thread, so the event loop never waits on Redis."""
        return await asyncio.to_thread(self.update, name, config, change)

    def _update_shared(
        self, name: str, config: BreakerConfig, change: Callable[[BreakerMachine], R]
    ) -> R:
        key = self.key(name)
        for _ in range(self.max_conflicts):
            version, raw = self._client.hmget(key, "v", "s")
            machine = BreakerMachine.from_json(raw, config) if raw else BreakerMachine(config)
            before = raw.decode() if isinstance(raw, bytes) else raw
            result = change(machine)
            after = machine.to_json()
            if before is not None and after == before:
                self._last_seen[name] = after
                return result  # a read-only decision: the read was atomic
            old = int(version or 0)
            if self._cas(keys=[key], args=[str(old), str(old + 1), after, self.ttl_ms]):
                self._last_seen[name] = after
                return result
        raise _redis_conflict()

    def _fall_back(self, name: str, config: BreakerConfig, exc: BaseException) -> None:
        with self._flag:
            first = not self._degraded
            self._degraded = True
            self._retry_at = self._monotonic() + self.retry_interval
            self.last_error = exc
        if first:
            logger.warning("redis breaker store unreachable (%r); using local state", exc)
            raw = self._last_seen.get(name)
            if raw is not None:
                self._local.seed(name, BreakerMachine.from_json(raw, config))

    def clear(self, name: str) -> None:
        """Delete breaker ``name``'s shared state (tests, manual reset)."""
        self._client.delete(self.key(name))
        self._last_seen.pop(name, None)


class RedisConflictError(OSError):
    """Too many concurrent writers: the compare-and-set kept losing."""


def _redis_conflict() -> RedisConflictError:
    return RedisConflictError("breaker state kept changing under compare-and-set")
