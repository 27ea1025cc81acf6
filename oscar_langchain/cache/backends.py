"""Storage backends of the cache: a small interface, an in-memory default and SQLite.

A backend stores :class:`Record` s (JSON text, raw float32 vector bytes: never pickle)
and owns expiry and size: ``get`` drops expired entries and counts a use; beyond
``max_size``, ``put`` evicts expired entries first, then those its eviction policy ranks
lowest (:class:`~oscar_langchain.cache.eviction.LRU` by default, or
:class:`~oscar_langchain.cache.eviction.LFU`), and returns their keys. Backends raise
:class:`~oscar_langchain.errors.CacheError` for any storage failure; the engine turns that
into a miss plus an error event.

``changes_since(cursor)`` lets a process mirror, in its in-memory vector index, the
vectors other processes wrote (SQLite, Redis). The Redis backend lives in
:mod:`oscar_langchain.cache.redis_backend`.

Example:
    >>> backend = MemoryBackend(max_size=1)
    >>> backend.put(Record("a", '"A"'), now=0.0)
    []
    >>> backend.put(Record("b", '"B"'), now=1.0)
    ['a']
    >>> backend.get("b", now=2.0).payload
    '"B"'
"""

from __future__ import annotations

import asyncio
import heapq
import sqlite3
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oscar_langchain.cache.eviction import EvictionPolicy, UseOrder, check_policy
from oscar_langchain.errors import CacheError, ConfigurationError

__all__ = ["CacheBackend", "Change", "MemoryBackend", "Record", "SQLiteBackend"]


@dataclass(frozen=True)
class Record:
    """One stored entry.

    Attributes:
        key: the exact key.
        payload: the cached value as JSON text.
        partition: the semantic partition (see :mod:`oscar_langchain.cache.core`).
        text: the normalised text the entry answers (compared by the guard).
        vector: the text's unit embedding as raw float32 bytes, if semantic.
        created_at: when it was stored (cache clock).
        expires_at: when it expires (cache clock), or ``None``.
    """

    key: str
    payload: str
    partition: str = ""
    text: str = ""
    vector: bytes | None = None
    created_at: float = 0.0
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        """Whether the entry has expired at ``now``."""
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True)
class Change:
    """A vector another writer stored: ``(key, partition, vector bytes)``."""

    key: str
    partition: str
    vector: bytes


def _check_max_size(max_size: int | None) -> None:
    if max_size is not None and max_size < 1:
        raise ConfigurationError("max_size", "must be >= 1 or None")


class CacheBackend(ABC):
    """What the cache engine needs from storage; async methods default to a thread."""

    @abstractmethod
    def get(self, key: str, now: float) -> Record | None:
        """The live record under ``key`` (counting one use of it), else ``None``."""

    @abstractmethod
    def put(self, record: Record, now: float) -> list[str]:
        """Store ``record``; returns the keys evicted to respect the maximum size."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    @abstractmethod
    def clear(self) -> None:
        """Remove every entry."""

    @abstractmethod
    def size(self) -> int:
        """Number of stored entries (expired ones may count until touched)."""

    def changes_since(self, cursor: int) -> tuple[list[Change], int]:
        """Vectors stored after ``cursor`` by any writer, and the new cursor."""
        return [], cursor

    @property
    def shared(self) -> bool:
        """Whether other processes may write to this storage."""
        return False

    async def aget(self, key: str, now: float) -> Record | None:
        """Async :meth:`get`."""
        return await asyncio.to_thread(self.get, key, now)

    async def aput(self, record: Record, now: float) -> list[str]:
        """Async :meth:`put`."""
        return await asyncio.to_thread(self.put, record, now)

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        await asyncio.to_thread(self.clear)

    async def achanges_since(self, cursor: int) -> tuple[list[Change], int]:
        """Async :meth:`changes_since`."""
        return await asyncio.to_thread(self.changes_since, cursor)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (no-op by default)."""


class MemoryBackend(CacheBackend):
    """Process-local storage in a dict, the default.

    Args:
        max_size: most entries kept; ``None`` for no limit.
        eviction: which entries go when full (default :class:`~.eviction.LRU`).
    """

    def __init__(self, max_size: int | None = None, eviction: EvictionPolicy | None = None) -> None:
        _check_max_size(max_size)
        self.max_size = max_size
        self.eviction = check_policy(eviction)
        self._data: dict[str, Record] = {}
        self._order = UseOrder(self.eviction)
        self._expiry: list[tuple[float, str]] = []  # (expires_at, key), a heap
        self._lock = threading.Lock()

    def get(self, key: str, now: float) -> Record | None:
        """See :meth:`CacheBackend.get`."""
        with self._lock:
            record = self._data.get(key)
            if record is None:
                return None
            if record.expired(now):
                del self._data[key]
                self._order.discard(key)
                return None
            self._order.touch(key, now)
            return record

    def put(self, record: Record, now: float) -> list[str]:
        """See :meth:`CacheBackend.put`."""
        with self._lock:
            self._data[record.key] = record
            self._order.touch(record.key, now, reset=True)
            if self.max_size is None:
                return []
            if record.expires_at is not None:
                heapq.heappush(self._expiry, (record.expires_at, record.key))
                self._compact_expiry()
            excess = len(self._data) - self.max_size
            if excess <= 0:
                return []
            evicted = self._expired(now, keep=record.key)
            if excess > len(evicted):
                evicted += self._order.victims(excess - len(evicted), keep=record.key)
            for key in evicted:
                del self._data[key]
            return evicted

    def _expired(self, now: float, keep: str) -> list[str]:
        # Entries past their TTL go before any live one (an unread expired entry would
        # otherwise hold its slot; under LFU, for good). Heap entries whose record was
        # replaced or removed since are stale and skipped.
        out: list[str] = []
        while self._expiry and self._expiry[0][0] <= now:
            expires_at, key = heapq.heappop(self._expiry)
            current = self._data.get(key)
            if key != keep and current is not None and current.expires_at == expires_at:
                self._order.discard(key)
                out.append(key)
        self._compact_expiry()
        return out

    def _compact_expiry(self) -> None:
        # Rewrites and reads that drop expired records leave stale heap entries: rebuild
        # the heap when they outnumber the live ones, so it stays bounded.
        if len(self._expiry) > 2 * len(self._data) + 64:
            self._expiry = [(r.expires_at, k) for k, r in self._data.items() if r.expires_at]
            heapq.heapify(self._expiry)

    def delete(self, key: str) -> None:
        """See :meth:`CacheBackend.delete`."""
        with self._lock:
            self._data.pop(key, None)
            self._order.discard(key)

    def clear(self) -> None:
        """See :meth:`CacheBackend.clear`."""
        with self._lock:
            self._data.clear()
            self._order.clear()
            self._expiry.clear()

    def size(self) -> int:
        """See :meth:`CacheBackend.size`."""
        return len(self._data)

    async def aget(self, key: str, now: float) -> Record | None:
        """In-memory: no thread needed."""
        return self.get(key, now)

    async def aput(self, record: Record, now: float) -> list[str]:
        """In-memory: no thread needed."""
        return self.put(record, now)

    async def aclear(self) -> None:
        """In-memory: no thread needed."""
        self.clear()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS {t} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    partition TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL DEFAULT '',
    vector BLOB,
    created_at REAL NOT NULL,
    expires_at REAL,
    last_access REAL NOT NULL,
    uses INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS {t}_lru ON {t}(last_access);
CREATE INDEX IF NOT EXISTS {t}_exp ON {t}(expires_at);
"""
_LFU_INDEX = "CREATE INDEX IF NOT EXISTS {t}_lfu ON {t}(uses, last_access)"
_EVICTION_ORDER = {False: "last_access, id", True: "uses, last_access, id"}


class SQLiteBackend(CacheBackend):
    """Persistent storage in one SQLite file (WAL mode, safe for several processes).

    Each process opens its own connection; writes are short transactions and readers
    never block writers (WAL). ``busy_timeout`` waits out another process's write.

    Args:
        path: the database file (``":memory:"`` for a private in-memory database).
        max_size: most entries kept; ``None`` for no limit.
        table: the table name (letters, digits and ``_``).
        busy_timeout: seconds to wait for another writer's lock.
        eviction: which entries go when full (default :class:`~.eviction.LRU`); every
            process sharing the file should use the same policy.
    """

    def __init__(
        self,
        path: str | Path,
        max_size: int | None = None,
        table: str = "oscar_cache",
        busy_timeout: float = 5.0,
        eviction: EvictionPolicy | None = None,
    ) -> None:
        _check_max_size(max_size)
        self.eviction = check_policy(eviction)
        if not table.replace("_", "").isalnum():
            raise ConfigurationError("table", "use letters, digits and underscores only")
        self.path = str(path)
        self.max_size = max_size
        self.table = table
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA.format(t=table))
            self._add_uses_column()
            if self.eviction.by_frequency:
                self._conn.execute(_LFU_INDEX.format(t=table))
        except sqlite3.Error as exc:
            raise CacheError(f"cannot open SQLite cache at {self.path}: {exc}") from exc

    def _add_uses_column(self) -> None:
        # Files written before eviction policies existed lack the ``uses`` column.
        columns = {row[1] for row in self._conn.execute(f"PRAGMA table_info({self.table})")}
        if "uses" in columns:
            return
        try:
            self._conn.execute(
                f"ALTER TABLE {self.table} ADD COLUMN uses INTEGER NOT NULL DEFAULT 1"
            )
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # else another process just added it
                raise

    @property
    def shared(self) -> bool:
        """A file may be shared by several processes."""
        return self.path != ":memory:"

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._conn.execute(sql.format(t=self.table), params).fetchall()
        except sqlite3.Error as exc:
            raise CacheError(f"SQLite cache error: {exc}") from exc

    def get(self, key: str, now: float) -> Record | None:
        """See :meth:`CacheBackend.get`."""
        rows = self._run(
            "SELECT key, payload, partition, text, vector, created_at, expires_at "
            "FROM {t} WHERE key = ?",
            (key,),
        )
        if not rows:
            return None
        k, payload, partition, text, vector, created, expires = rows[0]
        record = Record(
            str(k),
            str(payload),
            str(partition),
            str(text),
            bytes(vector) if isinstance(vector, (bytes, memoryview)) else None,
            float(created),
            float(expires) if isinstance(expires, (int, float)) else None,
        )
        if record.expired(now):
            self.delete(key)
            return None
        self._run("UPDATE {t} SET last_access = ?, uses = uses + 1 WHERE key = ?", (now, key))
        return record

    def put(self, record: Record, now: float) -> list[str]:
        """See :meth:`CacheBackend.put`."""
        try:
            with self._lock:
                cur = self._conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    cur.execute(
                        f"INSERT OR REPLACE INTO {self.table} (key, payload, partition, text, "
                        "vector, created_at, expires_at, last_access, uses) "
                        "VALUES (?,?,?,?,?,?,?,?,1)",
                        (
                            record.key,
                            record.payload,
                            record.partition,
                            record.text,
                            record.vector,
                            record.created_at,
                            record.expires_at,
                            now,
                        ),
                    )
                    evicted = self._evict(cur, record.key, now)
                    cur.execute("COMMIT")
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
            return evicted
        except sqlite3.Error as exc:
            raise CacheError(f"SQLite cache error: {exc}") from exc

    def _evict(self, cur: sqlite3.Cursor, keep: str, now: float) -> list[str]:
        """Inside the write transaction: expired rows first, then the policy's lowest."""
        if self.max_size is None:
            return []
        t = self.table
        (count,) = cur.execute(f"SELECT COUNT(*) FROM {t}").fetchone()
        if count <= self.max_size:
            return []
        delete = f"DELETE FROM {t} WHERE key = ?"
        rows = cur.execute(f"SELECT key FROM {t} WHERE expires_at <= ? AND key != ?", (now, keep))
        expired = [str(r[0]) for r in rows]
        cur.executemany(delete, [(k,) for k in expired])
        excess = count - len(expired) - self.max_size
        if excess <= 0:
            return expired
        order = _EVICTION_ORDER[self.eviction.by_frequency]
        rows = cur.execute(
            f"SELECT key FROM {t} WHERE key != ? ORDER BY {order} LIMIT ?", (keep, excess)
        )
        victims = [str(r[0]) for r in rows]
        cur.executemany(delete, [(k,) for k in victims])
        return expired + victims

    def delete(self, key: str) -> None:
        """See :meth:`CacheBackend.delete`."""
        self._run("DELETE FROM {t} WHERE key = ?", (key,))

    def clear(self) -> None:
        """See :meth:`CacheBackend.clear`."""
        self._run("DELETE FROM {t}")

    def size(self) -> int:
        """See :meth:`CacheBackend.size`."""
        return int(self._run("SELECT COUNT(*) FROM {t}")[0][0])

    def changes_since(self, cursor: int) -> tuple[list[Change], int]:
        """Vectors in rows with an id above ``cursor`` (ids are never reused)."""
        rows = self._run(
            "SELECT id, key, partition, vector FROM {t} WHERE id > ? AND vector IS NOT NULL "
            "ORDER BY id",
            (cursor,),
        )
        changes = [Change(str(k), str(p), bytes(v)) for _, k, p, v in rows]
        return changes, (int(rows[-1][0]) if rows else cursor)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
