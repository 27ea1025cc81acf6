from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from oscar_langchain.cache.backends import MemoryBackend, Record, SQLiteBackend
from oscar_langchain.cache.eviction import LFU
from oscar_langchain.errors import CacheError, ConfigurationError
from tests.unit_tests.cache_contract import BackendContract


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def make_backend(self):
        return lambda max_size, eviction=None: MemoryBackend(max_size, eviction)


class TestSQLiteBackend(BackendContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path):
        made = []

        def make(max_size, eviction=None):
            made.append(SQLiteBackend(tmp_path / "cache.db", max_size=max_size, eviction=eviction))
            return made[-1]

        yield make
        for backend in made:
            backend.close()


def test_sqlite_uses_wal_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    first = SQLiteBackend(path)
    first.put(Record("k", '"v"'), now=0.0)
    mode = first._run("PRAGMA journal_mode")[0][0]
    first.close()
    second = SQLiteBackend(path)
    assert mode == "wal"
    assert second.get("k", now=1.0) is not None
    second.close()


def test_backend_arguments_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="max_size"):
        MemoryBackend(max_size=0)
    with pytest.raises(ConfigurationError, match="table"):
        SQLiteBackend(tmp_path / "x.db", table="x; drop")


def test_sqlite_errors_become_cache_errors(tmp_path: Path) -> None:
    with pytest.raises(CacheError):
        SQLiteBackend(tmp_path / "missing-dir" / "x.db")
    backend = SQLiteBackend(tmp_path / "x.db")
    backend.close()
    with pytest.raises(CacheError):
        backend.get("k", now=0.0)
    with pytest.raises(CacheError):
        backend.put(Record("k", "1"), now=0.0)


def test_sqlite_file_without_a_uses_column_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE oscar_cache (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL "
        "UNIQUE, payload TEXT NOT NULL, partition TEXT NOT NULL DEFAULT '', text TEXT NOT NULL "
        "DEFAULT '', vector BLOB, created_at REAL NOT NULL, expires_at REAL, last_access REAL "
        "NOT NULL); INSERT INTO oscar_cache (key, payload, created_at, last_access) "
        "VALUES ('old', '\"v\"', 0, 0);"
    )
    conn.close()
    backend = SQLiteBackend(path, max_size=1, eviction=LFU())
    assert backend.get("old", now=1.0) is not None
    assert backend.put(Record("new", '"w"'), now=2.0) == ["old"]
    backend.close()


def test_memory_expiry_heap_drops_stale_entries() -> None:
    backend = MemoryBackend(max_size=2)
    for i in range(100):  # each rewrite leaves a stale heap entry behind
        backend.put(Record("k", "1", expires_at=1000.0 + i), now=0.0)
    backend.put(Record("a", "1", expires_at=5.0), now=1.0)
    assert backend.put(Record("b", "1"), now=6.0) == ["a"]
    assert len(backend._expiry) <= 2 * backend.size() + 64
    assert backend.get("k", now=7.0) is not None


def test_memory_expiry_heap_stays_bounded_when_the_cache_never_fills() -> None:
    backend = MemoryBackend(max_size=100)
    for i in range(5_000):
        backend.put(Record("k", "1", expires_at=float(i + 1)), now=float(i))
    assert backend.get("k", now=4_999.5) is not None
    assert len(backend._expiry) <= 2 * len(backend._data) + 64 + 1
