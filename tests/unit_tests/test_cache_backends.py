from __future__ import annotations

from pathlib import Path

import pytest

from oscar_langchain.cache.backends import MemoryBackend, Record, SQLiteBackend
from oscar_langchain.errors import CacheError, ConfigurationError
from tests.unit_tests.cache_contract import BackendContract


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def make_backend(self):
        return lambda max_size: MemoryBackend(max_size=max_size)


class TestSQLiteBackend(BackendContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path):
        made = []

        def make(max_size):
            made.append(SQLiteBackend(tmp_path / "cache.db", max_size=max_size))
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
