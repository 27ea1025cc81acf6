"""Route limits kept in Redis: atomic across processes (one Lua script per booking).

Each route has four keys under ``prefix``: a sorted set of request ids (the rpm
window), a sorted set of ``id|tokens`` members (the tpm window), the USD spent and
the in-flight count. :meth:`RedisLimitStore.try_acquire` checks and books in one
script, so two processes can never both take the last slot.

When Redis cannot be reached the store says so (a warning, ``describe()`` and
``degraded``) and keeps limits in a local :class:`MemoryLimitStore` until
``retry_interval`` has passed; local limits then hold per process only.

Needs ``pip install oscar-langchain[redis]``.

Example:
    >>> RedisLimitStore.__name__  # doctest needs no server; see the integration tests
    'RedisLimitStore'
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.routing.limits import MemoryLimitStore, Reservation, Usage
from oscar_langchain.routing.route import Route

__all__ = ["RedisLimitStore"]

logger = logging.getLogger(__name__)

_ACQUIRE = """
local now = tonumber(ARGV[1])
local horizon = now - tonumber(ARGV[2])
local tokens = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local rpm, tpm = tonumber(ARGV[6]), tonumber(ARGV[7])
local budget, maxif = tonumber(ARGV[8]), tonumber(ARGV[9])
local ttl = math.floor(tonumber(ARGV[2]) * 1000) + 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', horizon)
local inflight = tonumber(redis.call('GET', KEYS[4]) or '0')
if maxif >= 0 and inflight >= maxif then return {0, 'in_flight', tostring(inflight)} end
local requests = redis.call('ZCARD', KEYS[1])
if rpm >= 0 and requests >= rpm then return {0, 'rpm', tostring(requests)} end
if tpm >= 0 then
  local used = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    used = used + tonumber(string.match(m, '|(%d+)$'))
  end
  if used + tokens > tpm then return {0, 'tpm', tostring(used)} end
end
local spent = tonumber(redis.call('GET', KEYS[3]) or '0')
if budget >= 0 and spent + cost > budget + 1e-9 then return {0, 'budget', tostring(spent)} end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
if tokens > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[3] .. '|' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if cost > 0 then redis.call('INCRBYFLOAT', KEYS[3], ARGV[5]) end
redis.call('INCR', KEYS[4])
return {1, 'ok', ''}
"""

_RELEASE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
local old, new = ARGV[2], ARGV[3]
if new ~= '' and new ~= old then
  local member = ARGV[1] .. '|' .. old
  local at = redis.call('ZSCORE', KEYS[2], member)
  if at then
    redis.call('ZREM', KEYS[2], member)
    if tonumber(new) > 0 then redis.call('ZADD', KEYS[2], at, ARGV[1] .. '|' .. new) end
  end
end
if tonumber(ARGV[4]) ~= 0 then redis.call('INCRBYFLOAT', KEYS[3], ARGV[4]) end
return 1
"""

_USAGE = """
local horizon = tonumber(ARGV[1]) - tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS, 4 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', horizon)
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', horizon)
  local used = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[i + 1], 0, -1)) do
    used = used + tonumber(string.match(m, '|(%d+)$'))
  end
  table.insert(out, tonumber(redis.call('GET', KEYS[i + 3]) or '0'))
  table.insert(out, redis.call('ZCARD', KEYS[i]))
  table.insert(out, used)
  table.insert(out, redis.call('GET', KEYS[i + 2]) or '0')
end
return out
"""


def _redis_module() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "RedisLimitStore needs redis: pip install oscar-langchain[redis]"
        ) from exc
    return redis


class RedisLimitStore:
    """Route limits shared by every process that uses the same Redis and ``prefix``.

    Args:
        client: a ``redis.Redis`` client, or a URL such as ``redis://127.0.0.1:6379/0``.
        prefix: key prefix (routers sharing limits must share it).
        window: rpm/tpm sliding window in seconds.
        clock: wall-clock seconds shared by the processes (injected in tests).
        fallback: local store used while Redis is unreachable.
        retry_interval: seconds before trying Redis again after a failure.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "oscar:router",
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
        fallback: MemoryLimitStore | None = None,
        retry_interval: float = 5.0,
    ) -> None:
        redis = _redis_module()
        if window <= 0:
            raise ConfigurationError("RedisLimitStore.window", f"must be > 0, got {window!r}")
        if isinstance(client, str):
            client = redis.Redis.from_url(client, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self.client = client
        self.prefix = prefix
        self.window = window
        self.clock = clock
        self.fallback = fallback or MemoryLimitStore(window=window, clock=clock)
        self.retry_interval = retry_interval
        self.degraded: str | None = None
        self._retry_at = 0.0
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._usage = client.register_script(_USAGE)

    def _keys(self, name: str) -> list[str]:
        base = f"{self.prefix}:{name}"
        return [f"{base}:rq", f"{base}:tk", f"{base}:spent", f"{base}:inflight"]

    def _use_redis(self) -> bool:
        return self.degraded is None or self.clock() >= self._retry_at

    def _failed(self, exc: BaseException) -> None:
        if self.degraded is None:
            logger.warning(
                "Redis limits unavailable (%s); falling back to local per-process limits", exc
            )
        self.degraded = f"{type(exc).__name__}: {exc}"
        self._retry_at = self.clock() + self.retry_interval

    def _recovered(self) -> None:
        if self.degraded is not None:
            logger.warning("Redis limits reachable again; shared limits restored")
            self.degraded = None

    def try_acquire(self, route: Route, *, tokens: int, cost: float) -> Reservation | str:
        """Book a call on ``route`` atomically across processes, or return the reason."""
        if self._use_redis():
            rid = uuid.uuid4().hex
            now = self.clock()

            def lim(v: float | None) -> float:
                return -1 if v is None else v

            try:
                ok, kind, used = self._acquire(
                    keys=self._keys(route.name),
                    args=[
                        repr(now), repr(self.window), rid, int(tokens), repr(float(cost)),
                        lim(route.rpm), lim(route.tpm), repr(float(lim(route.budget))),
                        lim(route.max_in_flight),
                    ],
                )  # fmt: skip
            except self._errors as exc:
                self._failed(exc)
            else:
                self._recovered()
                if int(ok) == 1:
                    return Reservation(route.name, rid, int(tokens), cost, now, backend="redis")
                return _reason(route, _text(kind), _text(used), tokens, cost)
        return self.fallback.try_acquire(route, tokens=tokens, cost=cost)

    def release(
        self, reservation: Reservation, *, tokens: int | None = None, cost: float | None = None
    ) -> None:
        """End a booked call, settling real ``tokens``/``cost``."""
        if reservation.backend != "redis":
            self.fallback.release(reservation, tokens=tokens, cost=cost)
            return
        keys = self._keys(reservation.route)
        delta = 0.0 if cost is None else cost - reservation.cost
        try:
            self._release(
                keys=[keys[3], keys[1], keys[2]],
                args=[
                    reservation.id,
                    str(reservation.tokens),
                    "" if tokens is None else str(int(tokens)),
                    repr(delta),
                ],
            )
        except self._errors as exc:
            self._failed(exc)  # the in-flight count of this call stays booked in Redis

    def usage(self, names: Iterable[str]) -> dict[str, Usage]:
        """Current usage of the named routes (one round trip)."""
        names = list(names)
        if names and self._use_redis():
            keys = [k for n in names for k in self._keys(n)]
            try:
                flat = self._usage(keys=keys, args=[repr(self.clock()), repr(self.window)])
            except self._errors as exc:
                self._failed(exc)
            else:
                self._recovered()
                return {
                    n: Usage(
                        int(flat[4 * i]),
                        int(flat[4 * i + 1]),
                        int(flat[4 * i + 2]),
                        float(_text(flat[4 * i + 3])),
                    )
                    for i, n in enumerate(names)
                }
        return self.fallback.usage(names)

    def reset(self, name: str) -> None:
        """Forget route ``name``'s usage and spend in Redis."""
        self.client.delete(*self._keys(name))

    def describe(self) -> str:
        """``"redis"``, or the fallback and why while Redis is unreachable."""
        return "redis" if self.degraded is None else f"local (redis down: {self.degraded})"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _reason(route: Route, kind: str, used: str, tokens: int, cost: float) -> str:
    if kind == "in_flight":
        return f"in-flight limit reached ({used}/{route.max_in_flight})"
    if kind == "rpm":
        return f"rpm limit reached ({used}/{route.rpm})"
    if kind == "tpm":
        return f"tpm limit: {used} used + {tokens} > {route.tpm}"
    return f"budget exhausted: ${float(used):.4f} spent + ${cost:.4f} > ${route.budget:.4f}"
