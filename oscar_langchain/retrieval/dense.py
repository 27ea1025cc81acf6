"""Exact cosine search over a contiguous float32 matrix, with optional MMR.

The dense half of the hybrid retriever (no LangChain import): vectors are
L2-normalised on the way in, stored row by row in a growable float32 matrix, and a
query is one matrix-vector product plus ``np.argpartition``. Deleted rows are masked
and compacted away once they are a quarter of the matrix.

Example:
    >>> index = DenseIndex()
    >>> index.add(["a", "b", "c"], [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    >>> [doc_id for doc_id, _ in index.search([1.0, 0.1], k=2)]
    ['a', 'c']
    >>> [doc_id for doc_id, _ in index.search_mmr([1.0, 0.1], k=2, lambda_mult=0.3)]
    ['a', 'b']
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from oscar_langchain.errors import ConfigurationError, RetrievalError
from oscar_langchain.retrieval._buffer import Buffer
from oscar_langchain.retrieval.fusion import Hits, ScoreStats
from oscar_langchain.retrieval.persist import (
    atomic_directory,
    load_array,
    read_json,
    read_manifest,
    write_json,
    write_manifest,
)

__all__ = ["DenseIndex"]

_FORMAT = "oscar-dense"
_NO_STATS = ScoreStats(0.0, 0.0)
F32 = np.ndarray[Any, np.dtype[np.float32]]


def _normalise(vectors: npt.ArrayLike) -> F32:
    arr = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    out: F32 = np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)
    return out


def _mmr(
    scores: F32,
    matrix: F32,
    candidates: np.ndarray[Any, Any],
    ids: list[str],
    *,
    k: int,
    fetch_k: int,
    lambda_mult: float,
) -> list[tuple[str, float]]:
    """Greedy MMR over the ``max(fetch_k, k)`` most relevant candidates."""
    pool_size = max(fetch_k, k)
    if len(candidates) > pool_size:
        candidates = candidates[np.argpartition(-scores[candidates], pool_size - 1)[:pool_size]]
    pool = matrix[candidates]
    relevance = scores[candidates]
    chosen: list[int] = []
    best_sim = np.full(len(candidates), -np.inf, dtype=np.float32)
    while len(chosen) < min(k, len(candidates)):
        redundancy = np.where(np.isinf(best_sim), 0.0, best_sim)
        mmr = lambda_mult * relevance - (1 - lambda_mult) * redundancy
        mmr[chosen] = -np.inf
        pick = int(np.argmax(mmr))
        chosen.append(pick)
        best_sim = np.maximum(best_sim, pool @ pool[pick])
    return [(ids[candidates[i]], float(relevance[i])) for i in chosen]


class DenseIndex:
    """Vectors keyed by string ids; exact cosine top-k.

    Args:
        compact_ratio: compact when this fraction of stored rows is deleted.

    Example:
        >>> idx = DenseIndex()
        >>> idx.add(["x"], [[3.0, 4.0]])
        >>> idx.search([3.0, 4.0], k=5)
        [('x', 1.0)]
    """

    def __init__(self, compact_ratio: float = 0.25) -> None:
        if not 0.0 < compact_ratio <= 1.0:
            raise ConfigurationError("compact_ratio", f"must be in (0, 1], got {compact_ratio}")
        self.compact_ratio = compact_ratio
        self._lock = threading.RLock()
        self._matrix: Buffer | None = None
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._live = Buffer(np.bool_)
        self._n_live = 0

    def __len__(self) -> int:
        return self._n_live

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._pos

    @property
    def dimension(self) -> int | None:
        """Vector dimension, ``None`` before the first add."""
        return None if self._matrix is None else self._matrix.view.shape[1]

    def add(self, ids: Sequence[str], vectors: npt.ArrayLike) -> None:
        """Store vectors; an id already present is replaced (upsert).

        Raises:
            ValueError: on a length or dimension mismatch, or repeated ids.
        """
        arr = _normalise(vectors) if len(ids) else np.zeros((0, 0), np.float32)
        if len(ids) != len(arr):
            raise ValueError(f"ids has {len(ids)} entries but vectors has {len(arr)}")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique within one add() call")
        if not ids:
            return
        with self._lock:
            if self._matrix is None:
                self._matrix = Buffer(np.float32, arr.shape[1])
            if arr.shape[1] != self._matrix.view.shape[1]:
                raise ValueError(
                    f"vectors have dimension {arr.shape[1]}, index has {self.dimension}"
                )
            existing = [d for d in ids if d in self._pos]
            if existing:
                self._delete(existing)
            start = len(self._ids)
            self._matrix.extend(arr)
            self._live.extend(np.ones(len(ids), np.bool_))
            self._ids.extend(ids)
            self._pos.update((d, start + i) for i, d in enumerate(ids))
            self._n_live += len(ids)
            self._maybe_compact()

    def delete(self, ids: Collection[str]) -> None:
        """Remove vectors by id; raises :class:`RetrievalError` on an unknown id."""
        with self._lock:
            unknown = [d for d in ids if d not in self._pos]
            if unknown:
                raise RetrievalError(f"cannot delete unknown document ids: {unknown[:5]}")
            self._delete(list(dict.fromkeys(ids)))
            self._maybe_compact()

    def _delete(self, ids: Sequence[str]) -> None:
        positions = [self._pos.pop(d) for d in ids]
        self._live.set(positions, False)
        self._n_live -= len(positions)

    def _maybe_compact(self) -> None:
        if len(self._ids) - self._n_live > self.compact_ratio * max(len(self._ids), 1):
            self.compact()

    def compact(self) -> None:
        """Drop deleted rows from storage."""
        with self._lock:
            if self._matrix is None:
                return
            keep = np.flatnonzero(self._live.view)
            self._matrix = Buffer.wrap(np.ascontiguousarray(self._matrix.view[keep]))
            self._ids = [self._ids[i] for i in keep]
            self._pos = {d: i for i, d in enumerate(self._ids)}
            self._live = Buffer.wrap(np.ones(len(keep), np.bool_))

    def _scores(
        self, query: npt.ArrayLike, allowed_ids: Collection[str] | None, with_stats: bool = False
    ) -> tuple[F32, F32, np.ndarray[Any, Any], list[str], ScoreStats]:
        with self._lock:
            if self._matrix is None:
                empty = np.zeros((0, 0), np.float32)
                return np.zeros(0, np.float32), empty, np.zeros(0, np.int64), [], _NO_STATS
            matrix, live, ids = self._matrix.view, self._live.view, self._ids
            all_live = self._n_live == len(live)
        q = _normalise(query)[0]
        if q.shape[0] != matrix.shape[1]:
            raise RetrievalError(
                f"query vector has dimension {q.shape[0]}, index has {matrix.shape[1]} "
                "(were the index and the query embedded with the same model?)"
            )
        scores = matrix @ q
        stats = _NO_STATS
        if with_stats:
            stats = ScoreStats.of(scores if all_live else scores[live[: len(scores)]])
        mask = live.copy()
        if allowed_ids is not None:
            allowed = np.zeros(len(mask), np.bool_)
            allowed[[p for d in allowed_ids if (p := self._pos.get(d, -1)) >= 0]] = True
            mask &= allowed[: len(mask)]
        return scores, matrix, np.flatnonzero(mask), ids, stats

    def search(
        self, query: npt.ArrayLike, k: int, allowed_ids: Collection[str] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` nearest vectors by cosine similarity as ``(id, score)``, best first.

        Raises:
            ValueError: when ``k <= 0``.
            RetrievalError: when the query's dimension differs from the index's.
        """
        return self.query(query, k, allowed_ids, with_stats=False).ranking

    def query(
        self,
        query: npt.ArrayLike,
        k: int,
        allowed_ids: Collection[str] | None = None,
        *,
        mmr_lambda: float | None = None,
        fetch_k: int = 20,
        with_stats: bool = True,
    ) -> Hits:
        """:meth:`search` or :meth:`search_mmr`, plus the query's cosine distribution.

        With ``mmr_lambda`` the ranking is MMR's over the ``fetch_k`` most similar
        vectors. ``stats`` holds the mean and standard deviation of the query's cosines
        over all live vectors (for :func:`~oscar_langchain.retrieval.fusion.zscore_fusion`;
        zeros when ``with_stats`` is false).

        Example:
            >>> idx = DenseIndex()
            >>> idx.add(["a", "b"], [[1.0, 0.0], [0.0, 1.0]])
            >>> hits = idx.query([1.0, 0.0], k=1)
            >>> hits.ranking, hits.stats.mean, hits.stats.std
            ([('a', 1.0)], 0.5, 0.5)
        """
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        if mmr_lambda is not None and not 0.0 <= mmr_lambda <= 1.0:
            raise ConfigurationError("lambda_mult", f"must be in [0, 1], got {mmr_lambda}")
        scores, matrix, candidates, ids, stats = self._scores(query, allowed_ids, with_stats)
        if mmr_lambda is not None:
            return Hits(
                _mmr(scores, matrix, candidates, ids, k=k, fetch_k=fetch_k, lambda_mult=mmr_lambda),
                stats,
            )
        if len(candidates) > k:
            candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
        order = np.lexsort((candidates, -scores[candidates]))
        return Hits([(ids[candidates[i]], float(scores[candidates[i]])) for i in order], stats)

    def search_mmr(
        self,
        query: npt.ArrayLike,
        k: int,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        allowed_ids: Collection[str] | None = None,
    ) -> list[tuple[str, float]]:
        """Maximal marginal relevance: relevant *and* mutually diverse results.

        ``lambda_mult`` 1 is plain relevance, 0 is maximal diversity. Scores returned
        are the cosine similarities to the query.
        """
        hits = self.query(
            query, k, allowed_ids, mmr_lambda=lambda_mult, fetch_k=fetch_k, with_stats=False
        )
        return hits.ranking

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to directory ``path`` atomically."""
        with atomic_directory(path) as tmp:
            self.dump_into(tmp)

    def dump_into(self, directory: Path) -> None:
        """Write the index files and manifest into an existing, empty ``directory``."""
        with self._lock:
            self.compact()
            dim = self.dimension or 0
            matrix = self._matrix.view if self._matrix is not None else np.zeros((0, 0))
            np.save(directory / "vectors.npy", matrix.astype(np.float32), allow_pickle=False)
            write_json(directory / "ids.json", self._ids)
            meta = {"dimension": dim, "compact_ratio": self.compact_ratio}
            write_manifest(directory, _FORMAT, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> DenseIndex:
        """Read an index saved by :meth:`save`; ``mmap`` maps the matrix read-only.

        Raises:
            RetrievalError: when the directory is missing, incomplete or inconsistent.
        """
        directory = Path(path)
        meta = read_manifest(directory, _FORMAT)["meta"]
        matrix = load_array(directory, "vectors.npy", mmap)
        ids = read_json(directory / "ids.json")
        if not isinstance(ids, list) or not all(isinstance(d, str) for d in ids):
            raise RetrievalError(f"corrupt index at {directory}: ids.json is not a list of str")
        if matrix.dtype != np.float32 or matrix.ndim != 2 or len(matrix) != len(ids):
            raise RetrievalError(f"corrupt index at {directory}: vectors disagree with ids")
        index = cls(float(meta.get("compact_ratio", 0.25)))
        if ids:
            index._matrix = Buffer.wrap(matrix)
        index._ids = list(ids)
        index._pos = {d: i for i, d in enumerate(ids)}
        index._live = Buffer.wrap(np.ones(len(ids), np.bool_))
        index._n_live = len(ids)
        return index
