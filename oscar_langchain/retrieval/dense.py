"""Exact cosine search over a float32 matrix of columns, with optional MMR.

The dense half of the hybrid retriever (no LangChain import): vectors are
L2-normalised on the way in and stored as the *columns* of a growable ``(dim, n)``
float32 matrix, so one row holds one coordinate of every document. A query's cosines
are ``q @ matrix`` (one BLAS matrix-vector product, memory-bound); when the query is
sparse, as hashed n-gram embeddings like
:class:`~oscar_langchain.embeddings.OfflineEmbeddings` are (10-20% nonzero entries for
a question), only the rows of its nonzero entries are read (:func:`cosines`): the
same scores, a fraction of the memory traffic. Top-k is ``np.argpartition``. Deleted
columns are masked and compacted away once they are a quarter of the matrix.

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
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.linalg import blas

from oscar_langchain.errors import ConfigurationError, RetrievalError
from oscar_langchain.retrieval._buffer import Buffer, ColumnBuffer
from oscar_langchain.retrieval.fusion import Hits, ScoreStats
from oscar_langchain.retrieval.persist import (
    atomic_directory,
    load_array,
    read_json,
    read_manifest,
    write_json,
    write_manifest,
)

__all__ = ["DenseIndex", "cosines", "gathered_product"]

_FORMAT = "oscar-dense"
_NO_STATS = ScoreStats(0.0, 0.0)
F32 = np.ndarray[Any, np.dtype[np.float32]]
_saxpy: Callable[..., F32] = blas.saxpy

# When gathering rows pays (docs/bench_retriever.md, 20k x 1024, one BLAS thread):
# one axpy per nonzero query entry streams a row as fast as the full product does
# but costs ~0.3 us of call overhead, worth ~2,000 documents of streaming; measured
# crossover at 20k documents ~75% nonzero. Gather when the modelled cost is at most
# _GATHER_MAX_SHARE of the full product's (below ~55% nonzero at 20k documents,
# ~20% at 1k; small matrices sit in cache, where the full product is fastest).
_GATHER_MAX_SHARE = 0.6
_GATHER_CALL_DOCS = 2048


def _gather_pays(nonzero: int, dim: int, n: int) -> bool:
    return nonzero * (n + _GATHER_CALL_DOCS) <= _GATHER_MAX_SHARE * dim * n


def gathered_product(columns: F32, rows: np.ndarray[Any, Any], weights: F32) -> F32:
    """``weights @ columns[rows]`` without copying the rows: one BLAS axpy per row.

    Each row of ``columns`` must be contiguous (as in a C-ordered matrix or a
    :class:`~oscar_langchain.retrieval._buffer.ColumnBuffer` view).

    Example:
        >>> cols = np.arange(6, dtype=np.float32).reshape(3, 2)
        >>> gathered_product(cols, np.array([0, 2]), np.array([1.0, 0.5], np.float32)).tolist()
        [2.0, 3.5]
    """
    out = np.zeros(columns.shape[1], np.float32)
    for row, weight in zip(rows.tolist(), weights.tolist(), strict=True):
        out = _saxpy(columns[row], out, a=weight)
    return out


def cosines(columns: F32, query: F32) -> F32:
    """``query @ columns`` for a ``(dim, n)`` matrix, gathering rows when the query is sparse.

    The result is the full product's to float32 rounding; which path runs depends only
    on the query's number of nonzero entries and the matrix's shape.

    Example:
        >>> cols = np.eye(4, 3000, dtype=np.float32)  # 3000 unit vectors as columns
        >>> scores = cosines(cols, np.array([0.0, 1.0, 0.0, 0.0], np.float32))
        >>> scores[:3].tolist(), float(scores.sum())
        ([0.0, 1.0, 0.0], 1.0)
    """
    dim, n = columns.shape
    nonzero = np.flatnonzero(query)
    if _gather_pays(len(nonzero), dim, n):
        return gathered_product(columns, nonzero, query[nonzero])
    scores: F32 = query @ columns
    return scores


def _top_k(scores: F32, candidates: np.ndarray[Any, Any] | None, k: int) -> np.ndarray[Any, Any]:
    """Positions of the ``k`` best scores among ``candidates`` (``None``: all), unordered."""
    if candidates is None:
        if len(scores) <= k:
            return np.arange(len(scores))
        return np.argpartition(scores, len(scores) - k)[len(scores) - k :]
    if len(candidates) <= k:
        return candidates
    picked: np.ndarray[Any, Any] = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
    return picked


def _normalise(vectors: npt.ArrayLike) -> F32:
    arr = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    out: F32 = np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0)
    return out


def _mmr(
    scores: F32,
    columns: F32,
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
    candidates = np.sort(candidates)  # gathering columns in storage order is faster
    pool = np.ascontiguousarray(columns[:, candidates].T)
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
        >>> [(doc_id, round(score, 6)) for doc_id, score in idx.search([3.0, 4.0], k=5)]
        [('x', 1.0)]
    """

    def __init__(self, compact_ratio: float = 0.25) -> None:
        if not 0.0 < compact_ratio <= 1.0:
            raise ConfigurationError("compact_ratio", f"must be in (0, 1], got {compact_ratio}")
        self.compact_ratio = compact_ratio
        self._lock = threading.RLock()
        self._columns: ColumnBuffer | None = None  # (dim, n): one column per vector
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
        return None if self._columns is None else self._columns.view.shape[0]

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
            if self._columns is None:
                self._columns = ColumnBuffer(np.float32, arr.shape[1])
            if arr.shape[1] != self._columns.view.shape[0]:
                raise ValueError(
                    f"vectors have dimension {arr.shape[1]}, index has {self.dimension}"
                )
            existing = [d for d in ids if d in self._pos]
            if existing:
                self._delete(existing)
            start = len(self._ids)
            self._columns.extend(arr.T)
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
            if self._columns is None:
                return
            keep = np.flatnonzero(self._live.view)
            self._columns = ColumnBuffer.wrap(np.ascontiguousarray(self._columns.view[:, keep]))
            self._ids = [self._ids[i] for i in keep]
            self._pos = {d: i for i, d in enumerate(self._ids)}
            self._live = Buffer.wrap(np.ones(len(keep), np.bool_))

    def _scores(
        self, query: npt.ArrayLike, allowed_ids: Collection[str] | None, with_stats: bool = False
    ) -> tuple[F32, F32, np.ndarray[Any, Any] | None, list[str], ScoreStats]:
        """The query's cosines with every stored column, and what ranking them needs.

        Returns the scores, the columns, the candidate positions (``None``: all), the
        ids and the score stats.
        """
        with self._lock:
            if self._columns is None:
                empty = np.zeros((0, 0), np.float32)
                return np.zeros(0, np.float32), empty, np.zeros(0, np.int64), [], _NO_STATS
            columns, live, ids = self._columns.view, self._live.view, self._ids
            all_live = self._n_live == len(live)
            allowed = None
            if allowed_ids is not None:
                allowed = [p for d in allowed_ids if (p := self._pos.get(d, -1)) >= 0]
        q = _normalise(query)[0]
        if q.shape[0] != columns.shape[0]:
            raise RetrievalError(
                f"query vector has dimension {q.shape[0]}, index has {columns.shape[0]} "
                "(were the index and the query embedded with the same model?)"
            )
        scores = cosines(columns, q)
        stats = _NO_STATS
        if with_stats:
            stats = ScoreStats.of(scores if all_live else scores[live[: len(scores)]])
        if all_live and allowed is None:
            return scores, columns, None, ids, stats
        mask = live[: len(scores)].copy()
        if allowed is not None:
            wanted = np.zeros(len(mask), np.bool_)
            wanted[allowed] = True
            mask &= wanted
        return scores, columns, np.flatnonzero(mask), ids, stats

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
        scores, columns, candidates, ids, stats = self._scores(query, allowed_ids, with_stats)
        if mmr_lambda is not None:
            pool = np.arange(len(scores)) if candidates is None else candidates
            return Hits(
                _mmr(scores, columns, pool, ids, k=k, fetch_k=fetch_k, lambda_mult=mmr_lambda),
                stats,
            )
        top = _top_k(scores, candidates, k)
        order = np.lexsort((top, -scores[top]))
        return Hits([(ids[top[i]], float(scores[top[i]])) for i in order], stats)

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
            columns = self._columns.view if self._columns is not None else np.zeros((0, 0))
            np.save(directory / "columns.npy", columns.astype(np.float32), allow_pickle=False)
            write_json(directory / "ids.json", self._ids)
            meta = {"dimension": dim, "compact_ratio": self.compact_ratio, "layout": "columns"}
            write_manifest(directory, _FORMAT, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> DenseIndex:
        """Read an index saved by :meth:`save`; ``mmap`` maps the matrix read-only.

        An index saved before the column layout (one row per vector, ``vectors.npy``)
        loads too, transposed into memory (so ``mmap`` does not apply to it).

        Raises:
            RetrievalError: when the directory is missing, incomplete or inconsistent.
        """
        directory = Path(path)
        meta = read_manifest(directory, _FORMAT)["meta"]
        layout = meta.get("layout", "rows")
        if layout == "columns":
            columns = load_array(directory, "columns.npy", mmap)
        elif layout == "rows":
            columns = np.ascontiguousarray(load_array(directory, "vectors.npy").T)
        else:
            raise RetrievalError(f"corrupt index at {directory}: unknown layout {layout!r}")
        ids = read_json(directory / "ids.json")
        if not isinstance(ids, list) or not all(isinstance(d, str) for d in ids):
            raise RetrievalError(f"corrupt index at {directory}: ids.json is not a list of str")
        if columns.dtype != np.float32 or columns.ndim != 2 or columns.shape[1] != len(ids):
            raise RetrievalError(f"corrupt index at {directory}: vectors disagree with ids")
        index = cls(float(meta.get("compact_ratio", 0.25)))
        if ids:
            index._columns = ColumnBuffer.wrap(columns)
        index._ids = list(ids)
        index._pos = {d: i for i, d in enumerate(ids)}
        index._live = Buffer.wrap(np.ones(len(ids), np.bool_))
        index._n_live = len(ids)
        return index
