"""SQLite shared by several processes (real subprocesses on one file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from oscar_langchain.cache.backends import SQLiteBackend

WRITER = """
import sys
from oscar_langchain.cache.backends import SQLiteBackend, Record
backend = SQLiteBackend(sys.argv[1])
for i in range(30):
    backend.put(Record(f"{sys.argv[2]}-{i}", str(i), vector=b"\\0\\0\\x80?"), now=float(i))
    backend.get(f"{sys.argv[2]}-{i // 2}", now=float(i))
"""


def test_sqlite_is_safe_for_several_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SQLiteBackend(path).close()  # create the schema once
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, path, name], cwd=Path.cwd())
        for name in ("p1", "p2", "p3")
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    backend = SQLiteBackend(path)
    assert backend.size() == 90
    changes, _ = backend.changes_since(0)
    assert len(changes) == 90
    backend.close()
