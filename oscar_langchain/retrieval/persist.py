"""Safe persistence for indexes: a directory of ``.npy`` + JSON, written atomically.

A save writes into a hidden temporary directory next to the target, writes a
``manifest.json`` (format, version, and each file's size) *last*, fsyncs the files and
directories, then renames the directory into place and fsyncs its parent. A loader
refuses a directory without a complete manifest or whose files do not match it, so a
save that failed half-way never yields an index that loads. Arrays are read with
``allow_pickle=False``; nothing is pickled.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "idx"
    >>> with atomic_directory(target) as tmp:
    ...     np.save(tmp / "a.npy", np.arange(3))
    ...     write_manifest(tmp, "demo", {"n": 3})
    >>> read_manifest(target, "demo")["meta"]
    {'n': 3}
    >>> load_array(target, "a.npy").tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from oscar_langchain.errors import RetrievalError

__all__ = [
    "FORMAT_VERSION",
    "atomic_directory",
    "load_array",
    "read_json",
    "read_manifest",
    "write_json",
    "write_manifest",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or on POSIX a directory's entries) to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file under ``root``, then every directory, deepest first, then ``root``.

    Directories are POSIX only: Windows cannot open one for fsync (NTFS journals its
    metadata itself).
    """
    paths = sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    for path in paths:
        if path.is_file():
            _fsync(path)
    if os.name == "posix":
        for path in paths:
            if path.is_dir():
                _fsync(path)
        _fsync(root)


@contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds.

    Before the rename every file and directory written is fsynced, and after it the
    parent directory is (on POSIX), so a save that returned survives a crash or power
    loss whole: without that, the rename can reach the disk before the data, leaving a
    ``target`` with empty or truncated files. A crash between moving the previous
    ``target`` aside and renaming the new one into place leaves no ``target``; the
    previous index is then at ``.<name>.old-*`` beside it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        if not (tmp / MANIFEST).is_file():
            raise RetrievalError(f"save of {target} wrote no manifest")
        _fsync_tree(tmp)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
            os.rename(target, old)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.name == "posix":
        _fsync(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as UTF-8 JSON."""
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


def read_json(path: Path) -> Any:
    """Read JSON, turning any failure into a :class:`RetrievalError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RetrievalError(f"corrupt index: cannot read {path.name}: {exc}") from exc


def write_manifest(directory: Path, kind: str, meta: dict[str, Any]) -> None:
    """Record every file in ``directory`` with its size; call this last."""
    files = {
        p.relative_to(directory).as_posix(): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"format": kind, "version": FORMAT_VERSION, "files": files, "meta": meta}
    write_json(directory / MANIFEST, manifest)


def read_manifest(directory: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """Read and verify ``directory``'s manifest; raise :class:`RetrievalError` if broken."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RetrievalError(f"no index directory at {directory}")
    if not (directory / MANIFEST).is_file():
        raise RetrievalError(f"corrupt index at {directory}: no {MANIFEST} (incomplete save?)")
    manifest = read_json(directory / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != kind:
        raise RetrievalError(f"corrupt index at {directory}: not a {kind!r} index")
    if manifest.get("version") != FORMAT_VERSION:
        raise RetrievalError(
            f"index at {directory} has format version {manifest.get('version')}, "
            f"this library reads {FORMAT_VERSION}"
        )
    for name, size in dict(manifest.get("files", {})).items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != size:
            raise RetrievalError(f"corrupt index at {directory}: {name} is missing or truncated")
    return manifest


def load_array(directory: Path, name: str, mmap: bool = False) -> np.ndarray[Any, Any]:
    """Load one ``.npy`` file without pickle, optionally memory-mapped read-only."""
    mode: Literal["r"] | None = "r" if mmap else None
    try:
        array: np.ndarray[Any, Any] = np.load(directory / name, allow_pickle=False, mmap_mode=mode)
        return array
    except (OSError, ValueError) as exc:
        raise RetrievalError(f"corrupt index: cannot read {name}: {exc}") from exc
