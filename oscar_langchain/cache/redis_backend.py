"""Redis backend: shared across processes and machines, TTL native, eviction by sorted set.

Layout under ``prefix``: ``{prefix}:e:{key}`` is a hash (JSON payload, partition, text,
raw float32 vector bytes, timestamps, use count) with a native ``PEXPIRE`` when the
entry has a TTL; ``{prefix}:order`` is a sorted set of keys scored by the eviction
policy (:meth:`~oscar_langchain.cache.eviction.LFU.score` of the entry's uses and of
``{prefix}:uses``, a global use counter, so recency does not depend on the clocks of
several machines); ``{prefix}:expiry`` scores the keys of entries with a TTL by expiry
time; Lua scripts count a use, evict (expired keys first, then the lowest-scored, never
the one just written) and forget the keys whose hash Redis has expired (on a read that
finds the hash gone, and from the earliest expiry on, on every write and ``size()``),
atomically even with several writers, so the sets never keep dead keys for long;
``{prefix}:log`` is a stream of the keys that carry vectors, in write order, so each
process can mirror the others' vectors in its own index. Sync calls use
``redis.Redis``, async calls ``redis.asyncio.Redis``, one client per event loop, closed
when its loop shuts down (``asyncio.run`` and ``asyncio.Runner`` do that) or by
:meth:`RedisBackend.aclose` / :meth:`RedisBackend.close`: no threads. The log is a
Redis stream capped at twice ``max_size`` (or a million entries); a process that falls
further behind than the cap misses some neighbours, never returns a wrong one. Every
Redis or socket failure becomes a :class:`~oscar_langchain.errors.CacheError` (the engine
serves a miss); the client reconnects on the next call once the server is back.

Requires the ``redis`` extra: ``pip install oscar-langchain[redis]``.

Example:
    >>> backend = RedisBackend("redis://127.0.0.1:1/0")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from oscar_langchain.cache.backends import CacheBackend, Change, Record, _check_max_size
from oscar_langchain.cache.eviction import MAX_COUNTED_USES, EvictionPolicy, check_policy
from oscar_langchain.errors import CacheError, ConfigurationError

__all__ = ["RedisBackend"]

_LOG_CAP = 1_000_000
_SYNC_BATCH = 10_000
_INSTALL_HINT = "RedisBackend needs redis: pip install oscar-langchain[redis]"

# KEYS: entry hash, order set, use counter. ARGV: key, "1" for a write (one use, new
# member) or "0" for a read, use weight, use cap. Mirrors LRU.score / LFU.score.
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local uses = 1
if ARGV[2] == '0' then uses = redis.call('HINCRBY', KEYS[1], 'uses', 1) end
local seq = redis.call('INCR', KEYS[3])
if ARGV[3] ~= '0' then seq = seq % 4294967296 end
local score = string.format('%.0f', math.min(uses, tonumber(ARGV[4])) * tonumber(ARGV[3]) + seq)
if ARGV[2] == '1' then redis.call('ZADD', KEYS[2], score, ARGV[1])
else redis.call('ZADD', KEYS[2], 'XX', score, ARGV[1]) end
return uses
"""

# KEYS: order set, expiry set. ARGV: max size, key just written (never evicted),
# entry-name prefix, now. Expired entries go first, then the lowest-scored ones.
_EVICT = """
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
local victims = {}
if excess <= 0 then return victims end
local function drop(member)
  victims[#victims + 1] = member
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZREM', KEYS[2], member)
  redis.call('DEL', ARGV[3] .. member)
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])) do
  if member ~= ARGV[2] then drop(member) end
end
local left = excess - #victims
if left <= 0 then return victims end
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, left)) do
  if member ~= ARGV[2] and left > 0 then
    drop(member)
    left = left - 1
  end
end
return victims
"""

# KEYS: order set, expiry set. ARGV: entry-name prefix, most keys to forget. Walks the
# expiry set from the earliest expiry and forgets each key whose hash Redis has already
# expired, stopping at the first live one (native expiry follows the same order).
_PRUNE = """
local forgotten = 0
while forgotten < tonumber(ARGV[2]) do
  local first = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #first == 0 or redis.call('EXISTS', ARGV[1] .. first[1]) == 1 then break end
  redis.call('ZREM', KEYS[1], first[1])
  redis.call('ZREM', KEYS[2], first[1])
  forgotten = forgotten + 1
end
return forgotten
"""

# KEYS: entry hash, order set, expiry set. ARGV: key. A read found the hash gone (Redis
# expired it): forget the key unless a writer has stored it again meanwhile.
_FORGET = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
_PRUNE_PER_WRITE = 4
_PRUNE_BATCH = 1000


async def _close_at_shutdown(client: Any, forget: Any) -> AsyncGenerator[None, None]:
    """Suspended until its loop's ``shutdown_asyncgens``, then closes ``client``."""
    try:
        yield
    finally:
        forget()
        await client.aclose()


def _import_redis() -> Any:
    try:
        import redis
        import redis.asyncio
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ConfigurationError("backend", _INSTALL_HINT) from exc
    return redis


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _record(key: str, fields: Mapping[bytes, bytes]) -> Record:
    try:
        expires = fields.get(b"expires_at", b"")
        return Record(
            key=key,
            payload=_text(fields[b"payload"]),
            partition=_text(fields.get(b"partition", b"")),
            text=_text(fields.get(b"text", b"")),
            vector=fields.get(b"vector") or None,
            created_at=float(fields.get(b"created_at", b"0")),
            expires_at=float(expires) if expires else None,
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise CacheError(f"corrupt Redis entry {key[:16]}: {exc!r}") from exc


class RedisBackend(CacheBackend):
    """Cache storage in Redis.

    Args:
        url: the Redis URL (``redis://host:port/db``).
        prefix: namespace of every Redis key this backend writes.
        max_size: most entries kept; ``None`` for no limit.
        socket_timeout: seconds before a Redis call gives up (keep it short: a cache
            that waits long on a dead server is worse than a miss).
        eviction: which entries go when full (default :class:`~.eviction.LRU`); every
            process sharing ``prefix`` should use the same policy.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "oscar:cache",
        max_size: int | None = None,
        socket_timeout: float = 0.5,
        eviction: EvictionPolicy | None = None,
    ) -> None:
        _check_max_size(max_size)
        self.eviction = check_policy(eviction)
        if socket_timeout <= 0:
            raise ConfigurationError("socket_timeout", "must be > 0")
        redis = _import_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        self.url = url
        self.prefix = prefix
        self.max_size = max_size
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self._client = redis.Redis.from_url(url, **options)
        from redis.asyncio.retry import Retry as AsyncRetry

        options["retry"] = AsyncRetry(NoBackoff(), 0)
        self._options = options
        self._log_cap = 2 * max_size if max_size is not None else _LOG_CAP
        # loop -> (client, the suspended generator that closes it at loop shutdown)
        self._aclients: dict[asyncio.AbstractEventLoop, tuple[Any, Any]] = {}
        self._aclients_lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """Redis is shared by design."""
        return True

    def _aclient(self) -> Any:
        """This loop's client; made on first use and closed when the loop shuts down.

        An asyncio client is bound to its loop and holds it, so a client per loop is kept
        until the loop's ``shutdown_asyncgens`` (run by ``asyncio.run`` and
        ``asyncio.Runner`` before closing it) finalises a suspended async generator
        that closes the client. Clients of loops closed without that are dropped here.
        """
        import redis.asyncio

        loop = asyncio.get_running_loop()
        with self._aclients_lock:
            entry = self._aclients.get(loop)
            if entry is not None:
                return entry[0]
            for dead in [other for other in self._aclients if other.is_closed()]:
                del self._aclients[dead]
            client = redis.asyncio.Redis.from_url(self.url, **self._options)
            closer = _close_at_shutdown(client, lambda: self._forget_aclient(loop, client))
            self._aclients[loop] = (client, closer)
        step = closer.asend(None)  # runs to the yield; the loop now tracks the generator
        with contextlib.suppress(StopIteration):
            step.send(None)
        return client

    def _forget_aclient(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        with self._aclients_lock:
            entry = self._aclients.get(loop)
            if entry is not None and entry[0] is client:
                del self._aclients[loop]

    def _k(self, key: str) -> str:
        return f"{self.prefix}:e:{key}"

    @property
    def _order(self) -> str:
        return f"{self.prefix}:order"

    @property
    def _expiry(self) -> str:
        return f"{self.prefix}:expiry"

    def _touch_args(self, key: str, write: bool) -> tuple[Any, ...]:
        return (_TOUCH, 3, self._k(key), self._order, f"{self.prefix}:uses", key,
                "1" if write else "0", self.eviction.use_weight, MAX_COUNTED_USES)  # fmt: skip

    def _prune_args(self, limit: int) -> tuple[Any, ...]:
        return (_PRUNE, 2, self._order, self._expiry, self._k(""), limit)

    def _forget_args(self, key: str) -> tuple[Any, ...]:
        return (_FORGET, 3, self._k(key), self._order, self._expiry, key)

    @property
    def _log(self) -> str:
        return f"{self.prefix}:log"

    def _fail(self, exc: BaseException) -> CacheError:
        return CacheError(f"Redis cache error: {exc!r}")

    @staticmethod
    def _mapping(record: Record) -> dict[str, Any]:
        mapping: dict[str, Any] = {
            "payload": record.payload,
            "partition": record.partition,
            "text": record.text,
            "created_at": repr(record.created_at),
            "expires_at": "" if record.expires_at is None else repr(record.expires_at),
            "uses": 1,
        }
        if record.vector is not None:
            mapping["vector"] = record.vector
        return mapping

    def _queue_put(self, pipe: Any, record: Record, now: float) -> None:
        name = self._k(record.key)
        pipe.delete(name)
        pipe.hset(name, mapping=self._mapping(record))
        if record.expires_at is not None:
            pipe.pexpire(name, max(1, int((record.expires_at - now) * 1000)))
        if record.expires_at is not None:
            pipe.zadd(self._expiry, {record.key: record.expires_at})
        else:
            pipe.zrem(self._expiry, record.key)
        pipe.eval(*self._touch_args(record.key, write=True))
        pipe.eval(*self._prune_args(_PRUNE_PER_WRITE))
        if record.vector is not None:
            pipe.xadd(self._log, {"k": record.key}, maxlen=self._log_cap, approximate=True)
        if self.max_size is not None:
            pipe.eval(_EVICT, 2, self._order, self._expiry, self.max_size, record.key,
                      self._k(""), repr(now))  # fmt: skip

    def _evicted(self, results: list[Any]) -> list[str]:
        return [_text(k) for k in results[-1]] if self.max_size is not None else []

    # -- sync -----------------------------------------------------------------------------

    def get(self, key: str, now: float) -> Record | None:
        """See :meth:`CacheBackend.get`."""
        try:
            fields = self._client.hgetall(self._k(key))
            if not fields:
                self._client.eval(*self._forget_args(key))
                return None
            record = _record(key, fields)
            if record.expired(now):
                self.delete(key)
                return None
            self._client.eval(*self._touch_args(key, write=False))
            return record
        except self._errors as exc:
            raise self._fail(exc) from exc

    def put(self, record: Record, now: float) -> list[str]:
        """See :meth:`CacheBackend.put`."""
        try:
            pipe = self._client.pipeline(transaction=True)
            self._queue_put(pipe, record, now)
            return self._evicted(pipe.execute())
        except self._errors as exc:
            raise self._fail(exc) from exc

    def delete(self, key: str) -> None:
        """See :meth:`CacheBackend.delete`."""
        try:
            self._client.delete(self._k(key))
            self._client.zrem(self._order, key)
            self._client.zrem(self._expiry, key)
        except self._errors as exc:
            raise self._fail(exc) from exc

    def clear(self) -> None:
        """See :meth:`CacheBackend.clear` (deletes every key under ``prefix``)."""
        try:
            batch: list[Any] = []
            for name in self._client.scan_iter(match=f"{self.prefix}:*", count=500):
                batch.append(name)
                if len(batch) >= 500:
                    self._client.delete(*batch)
                    batch = []
            if batch:
                self._client.delete(*batch)
        except self._errors as exc:
            raise self._fail(exc) from exc

    def size(self) -> int:
        """Entries in the order set, after forgetting those Redis has expired."""
        try:
            while self._client.eval(*self._prune_args(_PRUNE_BATCH)) == _PRUNE_BATCH:
                pass
            return int(self._client.zcard(self._order))
        except self._errors as exc:
            raise self._fail(exc) from exc

    def changes_since(self, cursor: int) -> tuple[list[Change], int]:
        """Vectors logged after ``cursor`` (a stream id packed as ``ms * 2**20 + seq``)."""
        start = "-" if cursor == 0 else f"({cursor >> 20}-{cursor & 0xFFFFF}"
        try:
            entries = self._client.xrange(self._log, min=start, max="+", count=_SYNC_BATCH)
            keys = [_text(fields[b"k"]) for _, fields in entries]
            if entries:
                ms, seq = _text(entries[-1][0]).split("-")
                cursor = (int(ms) << 20) | int(seq)
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self._k(key), "partition", "vector")
            rows = pipe.execute() if keys else []
        except self._errors as exc:
            raise self._fail(exc) from exc
        changes = [
            Change(key, _text(part), vec)
            for key, (part, vec) in zip(keys, rows, strict=True)
            if vec is not None and part is not None
        ]
        return changes, cursor

    # -- async ----------------------------------------------------------------------------

    async def aget(self, key: str, now: float) -> Record | None:
        """Async :meth:`get` on ``redis.asyncio``."""
        client = self._aclient()
        try:
            fields = await client.hgetall(self._k(key))
            if not fields:
                await client.eval(*self._forget_args(key))
                return None
            record = _record(key, fields)
            if record.expired(now):
                await client.delete(self._k(key))
                await client.zrem(self._order, key)
                await client.zrem(self._expiry, key)
                return None
            await client.eval(*self._touch_args(key, write=False))
            return record
        except self._errors as exc:
            raise self._fail(exc) from exc

    async def aput(self, record: Record, now: float) -> list[str]:
        """Async :meth:`put` on ``redis.asyncio``."""
        client = self._aclient()
        try:
            pipe = client.pipeline(transaction=True)
            self._queue_put(pipe, record, now)
            return self._evicted(await pipe.execute())
        except self._errors as exc:
            raise self._fail(exc) from exc

    def close(self) -> None:
        """Close the sync client and the async clients of running loops.

        An async client closes on its own loop: that of a loop running (in this thread
        or another) is scheduled there; that of a loop not running now closes when the
        loop next runs or shuts down. Inside a coroutine, :meth:`aclose` also waits
        for the running loop's client to close.
        """
        self._client.close()
        with self._aclients_lock:
            entries = list(self._aclients.items())
            self._aclients.clear()  # dropping a closer makes its loop close the client
        for loop, (client, _closer) in entries:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)

    async def aclose(self) -> None:
        """Close every client, awaiting the running loop's async client."""
        loop = asyncio.get_running_loop()
        with self._aclients_lock:
            mine = self._aclients.pop(loop, None)
        self.close()
        if mine is not None:
            await mine[0].aclose()
