"""A vector index of normalised float32 embeddings, searched with numpy.

Vectors live in *buckets*: each bucket is one contiguous ``(capacity, dim)`` float32
matrix that doubles when full (amortised O(1) appends); deleting a row moves the
bucket's last row into its place, so there is never a rebuild on delete. Each row
carries a partition id and a search only scores rows of the query's partition (see
:mod:`oscar_langchain.cache.core` for what a partition is).

Below ``ivf_threshold`` rows there is one bucket and search is exact (a matrix-vector
product, then ``argmax`` or ``argpartition``). Above it the index trains a coarse
quantiser once (a few k-means rounds on a sample; retrained when the index has grown
4x since) and keeps one bucket per centroid (IVF-flat): a search scores only the
``nprobe`` buckets whose centroids are nearest the query. A cache only cares about
close neighbours (similarity above its threshold), which land in the query's nearest
cells with high probability; ``benchmarks/bench_cache.py`` measures that recall.

Example:
    >>> index = VectorIndex(dim=3)
    >>> index.add("a", [1.0, 0.0, 0.0], partition="p")
    >>> index.add("b", [0.0, 1.0, 0.0], partition="p")
    >>> [(key, round(score, 3)) for key, score in index.search([0.9, 0.1, 0.0], k=1, partition="p")]
    [('a', 0.994)]
    >>> index.remove("a"), len(index)
    (True, 1)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from oscar_langchain.errors import ConfigurationError

__all__ = ["VectorIndex", "as_unit_vector"]

FloatArray = npt.NDArray[np.float32]


def as_unit_vector(vector: Sequence[float] | FloatArray, dim: int | None = None) -> FloatArray:
    """``vector`` as an L2-normalised float32 array (a zero vector stays zero)."""
    arr = np.asarray(vector, dtype=np.float32).reshape(-1)
    if dim is not None and arr.shape[0] != dim:
        raise ConfigurationError("vector", f"has dimension {arr.shape[0]}, expected {dim}")
    norm = float(np.linalg.norm(arr))
    return arr / norm if norm > 0 else arr


_BLOCK_ELEMENTS = 256 * 384


def matvec(matrix: FloatArray, query: FloatArray) -> npt.NDArray[np.float32]:
    """``matrix @ query``, in row blocks small enough for BLAS to stay on one thread.

    One large product lets OpenBLAS split it over its thread pool: a matrix-vector
    product gains nothing from that, and on a busy machine waiting for the other threads
    made a 10k x 384 product 10-30x slower (wall) in ``benchmarks/bench_cache.py``.
    Blocks of about 256 x 384 values run on the calling thread (checked: process CPU
    time equals thread CPU time) and take half to a third of ``np.einsum``'s CPU time.
    """
    n = matrix.shape[0]
    out: npt.NDArray[np.float32] = np.empty(n, dtype=np.float32)
    step = max(16, _BLOCK_ELEMENTS // max(1, matrix.shape[1]))
    for start in range(0, n, step):
        np.matmul(matrix[start : start + step], query, out=out[start : start + step])
    return out


class _Bucket:
    """Rows in one contiguous matrix, with their keys and partition ids."""

    __slots__ = ("keys", "matrix", "parts")

    def __init__(self, dim: int, capacity: int) -> None:
        self.matrix: FloatArray = np.zeros((capacity, dim), dtype=np.float32)
        self.parts = np.zeros(capacity, dtype=np.int32)
        self.keys: list[str] = []

    def append(self, key: str, unit: FloatArray, pid: int) -> int:
        n = len(self.keys)
        if n == self.matrix.shape[0]:
            grown = np.zeros((2 * n, self.matrix.shape[1]), dtype=np.float32)
            grown[:n] = self.matrix
            parts = np.zeros(2 * n, dtype=np.int32)
            parts[:n] = self.parts
            self.matrix, self.parts = grown, parts
        self.matrix[n] = unit
        self.parts[n] = pid
        self.keys.append(key)
        return n

    def pop(self, row: int) -> str | None:
        """Remove ``row``; returns the key moved into its place, if any."""
        last = len(self.keys) - 1
        moved = None
        if row != last:
            self.matrix[row] = self.matrix[last]
            self.parts[row] = self.parts[last]
            moved = self.keys[row] = self.keys[last]
        self.keys.pop()
        return moved

    def scores(self, query: FloatArray, pid: int | None) -> npt.NDArray[np.float32]:
        n = len(self.keys)
        scores: npt.NDArray[np.float32] = matvec(self.matrix[:n], query)
        if pid is not None:
            scores[self.parts[:n] != pid] = -np.inf
        return scores


def _kmeans(data: FloatArray, k: int, rounds: int, seed: int) -> FloatArray:
    """Spherical k-means: ``k`` unit centroids of the unit rows of ``data``."""
    rng = np.random.default_rng(seed)
    centroids: FloatArray = data[rng.choice(len(data), size=k, replace=False)].copy()
    for _ in range(rounds):
        assign = np.argmax(data @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, data)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        sums[empty] = data[rng.choice(len(data), size=int(empty.sum()))]
        norms[empty] = 1.0
        centroids = (sums / norms).astype(np.float32)
    return centroids


class VectorIndex:
    """Cosine-similarity index over unit float32 vectors, with partitions.

    Args:
        dim: the embedding dimension; ``None`` takes it from the first vector added.
        initial_capacity: rows allocated up front.
        ivf_threshold: rows above which the index switches to IVF buckets
            (``None``: always exact).
        nprobe: buckets scored per IVF search (default ``max(8, nlist // 16)``).
        seed: seed of the k-means sampling (deterministic by default).
    """

    def __init__(
        self,
        dim: int | None = None,
        initial_capacity: int = 64,
        ivf_threshold: int | None = 20_000,
        nprobe: int | None = None,
        seed: int = 0,
    ) -> None:
        if initial_capacity < 1:
            raise ConfigurationError("initial_capacity", "must be >= 1")
        if ivf_threshold is not None and ivf_threshold < 64:
            raise ConfigurationError("ivf_threshold", "must be >= 64 or None")
        if nprobe is not None and nprobe < 1:
            raise ConfigurationError("nprobe", "must be >= 1")
        self._dim = dim
        self._initial_capacity = initial_capacity
        self.ivf_threshold = ivf_threshold
        self._nprobe = nprobe
        self._seed = seed
        self._buckets: list[_Bucket] = []
        self._centroids: FloatArray | None = None
        self._trained_at = 0
        self._where: dict[str, tuple[int, int]] = {}  # key -> (bucket, row)
        self._part_ids: dict[str, int] = {}  # partition -> id, while it has rows
        self._part_rows: dict[int, int] = {}  # id -> rows (reference count)
        self._part_names: dict[int, str] = {}
        self._free_ids: list[int] = []
        self._lock = threading.Lock()

    @property
    def dim(self) -> int | None:
        """The embedding dimension (``None`` until the first vector)."""
        return self._dim

    def pin_dim(self, dim: int) -> None:
        """Fix the dimension before the first vector; raises if another one is fixed."""
        with self._lock:
            if self._dim is None:
                self._dim = dim
            elif self._dim != dim:
                raise ConfigurationError("vector", f"has dimension {dim}, expected {self._dim}")

    @property
    def nlist(self) -> int:
        """Number of buckets (1 while the index is exact)."""
        return max(1, len(self._buckets))

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    @property
    def partitions(self) -> int:
        """Number of partitions with rows (ids are freed with their last row)."""
        return len(self._part_ids)

    def _acquire(self, partition: str) -> int:
        pid = self._part_ids.get(partition)
        if pid is None:
            pid = self._free_ids.pop() if self._free_ids else len(self._part_ids) + 1
            self._part_ids[partition], self._part_names[pid] = pid, partition
        self._part_rows[pid] = self._part_rows.get(pid, 0) + 1
        return pid

    def _release(self, pid: int) -> None:
        left = self._part_rows[pid] - 1
        if left:
            self._part_rows[pid] = left
            return
        del self._part_rows[pid]
        del self._part_ids[self._part_names.pop(pid)]
        self._free_ids.append(pid)

    def _bucket_for(self, unit: FloatArray) -> int:
        if self._centroids is None:
            return 0
        return int(np.argmax(matvec(self._centroids, unit)))

    def _insert(self, key: str, unit: FloatArray, pid: int) -> None:
        b = self._bucket_for(unit)
        if not self._buckets:
            assert self._dim is not None
            self._buckets.append(_Bucket(self._dim, self._initial_capacity))
        self._where[key] = (b, self._buckets[b].append(key, unit, pid))

    def _delete(self, key: str) -> bool:
        where = self._where.pop(key, None)
        if where is None:
            return False
        b, row = where
        self._release(int(self._buckets[b].parts[row]))
        moved = self._buckets[b].pop(row)
        if moved is not None:
            self._where[moved] = (b, row)
        return True

    def _maybe_train(self) -> None:
        n = len(self._where)
        if self.ivf_threshold is None or n < self.ivf_threshold or n < 4 * self._trained_at:
            return
        assert self._dim is not None
        rows = [(k, b.matrix[r], b.parts[r]) for k, (i, r) in self._where.items()
                for b in (self._buckets[i],)]  # fmt: skip
        data = np.stack([v for _, v, _ in rows])
        rng = np.random.default_rng(self._seed)
        sample = data[rng.choice(n, size=min(n, 20_000), replace=False)]
        nlist = max(2, int(math.sqrt(n)))
        self._centroids = _kmeans(sample, nlist, rounds=5, seed=self._seed)
        self._trained_at = n
        capacity = max(8, 2 * n // nlist)
        self._buckets = [_Bucket(self._dim, capacity) for _ in range(nlist)]
        self._where = {}
        for key, vector, pid in rows:
            self._insert(key, vector, int(pid))

    def add(self, key: str, vector: Sequence[float] | FloatArray, partition: str = "") -> None:
        """Add ``key`` (or replace its vector) in ``partition``."""
        unit = as_unit_vector(vector, self._dim)
        with self._lock:
            if self._dim is None:
                self._dim = int(unit.shape[0])
            self._delete(key)
            self._insert(key, unit, self._acquire(partition))
            self._maybe_train()

    def remove(self, key: str) -> bool:
        """Remove ``key``; its bucket's last row moves into its place."""
        with self._lock:
            return self._delete(key)

    def clear(self) -> None:
        """Remove every row and go back to exact search."""
        with self._lock:
            self._buckets, self._where = [], {}
            self._centroids, self._trained_at = None, 0
            self._part_ids, self._part_rows, self._part_names = {}, {}, {}
            self._free_ids = []

    def _probe(self, query: FloatArray) -> list[int]:
        if self._centroids is None:
            return list(range(len(self._buckets)))
        nprobe = self._nprobe or max(8, len(self._buckets) // 16)
        near = matvec(self._centroids, query)
        if nprobe >= len(near):
            return list(range(len(near)))
        return [int(i) for i in np.argpartition(-near, nprobe - 1)[:nprobe]]

    def search(
        self,
        vector: Sequence[float] | FloatArray,
        k: int = 1,
        partition: str | None = None,
    ) -> list[tuple[str, float]]:
        """The ``k`` most similar keys (best first) with their cosine similarity.

        Args:
            vector: the query embedding (normalised here).
            k: how many neighbours to return.
            partition: only rows of this partition; ``None`` searches all rows.
        """
        if k < 1:
            raise ConfigurationError("k", "must be >= 1")
        with self._lock:
            if not self._where:
                return []
            query = as_unit_vector(vector, self._dim)
            pid = None
            if partition is not None:
                pid = self._part_ids.get(partition)
                if pid is None:
                    return []
            found: list[tuple[str, float]] = []
            for b in self._probe(query):
                bucket = self._buckets[b]
                if not bucket.keys:
                    continue
                scores = bucket.scores(query, pid)
                if k == 1:
                    top = np.array([int(np.argmax(scores))])
                else:
                    kk = min(k, len(scores))
                    top = np.argpartition(-scores, kk - 1)[:kk]
                found.extend(
                    (bucket.keys[i], float(scores[i])) for i in top if np.isfinite(scores[i])
                )
            found.sort(key=lambda item: -item[1])
            return found[:k]
