"""A flat vector index of normalised float32 embeddings, searched with numpy.

Rows live in one contiguous ``(capacity, dim)`` float32 matrix that doubles when full
(amortised O(1) appends). Deleting a row moves the last row into its place, so there
is never a rebuild. Each row carries a partition id; a search only considers rows of
the query's partition (see :mod:`oscar_langchain.cache.core` for what a partition is).
Top-1 is an ``argmax``; top-k an ``argpartition`` of the scores.

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


class VectorIndex:
    """Cosine-similarity index over unit float32 vectors, with partitions.

    Args:
        dim: the embedding dimension; ``None`` takes it from the first vector added.
        initial_capacity: rows allocated up front.
    """

    def __init__(self, dim: int | None = None, initial_capacity: int = 64) -> None:
        if initial_capacity < 1:
            raise ConfigurationError("initial_capacity", "must be >= 1")
        self._dim = dim
        self._capacity = initial_capacity
        self._matrix: FloatArray | None = None
        self._parts = np.zeros(initial_capacity, dtype=np.int32)
        self._keys: list[str] = []
        self._row: dict[str, int] = {}
        self._part_ids: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def dim(self) -> int | None:
        """The embedding dimension (``None`` until the first vector)."""
        return self._dim

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._row

    def _part_id(self, partition: str) -> int:
        pid = self._part_ids.get(partition)
        if pid is None:
            pid = self._part_ids[partition] = len(self._part_ids) + 1
        return pid

    def _ensure_room(self) -> FloatArray:
        if self._matrix is None:
            assert self._dim is not None
            self._matrix = np.zeros((self._capacity, self._dim), dtype=np.float32)
        n = len(self._keys)
        if n == self._capacity:
            self._capacity *= 2
            grown = np.zeros((self._capacity, self._matrix.shape[1]), dtype=np.float32)
            grown[:n] = self._matrix[:n]
            parts = np.zeros(self._capacity, dtype=np.int32)
            parts[:n] = self._parts[:n]
            self._matrix, self._parts = grown, parts
        return self._matrix

    def add(self, key: str, vector: Sequence[float] | FloatArray, partition: str = "") -> None:
        """Add ``key`` (or replace its vector) in ``partition``."""
        unit = as_unit_vector(vector, self._dim)
        with self._lock:
            if self._dim is None:
                self._dim = int(unit.shape[0])
            row = self._row.get(key)
            if row is None:
                matrix = self._ensure_room()
                row = len(self._keys)
                self._keys.append(key)
                self._row[key] = row
            else:
                assert self._matrix is not None
                matrix = self._matrix
            matrix[row] = unit
            self._parts[row] = self._part_id(partition)

    def remove(self, key: str) -> bool:
        """Remove ``key``; the last row moves into its place. Returns whether it was there."""
        with self._lock:
            row = self._row.pop(key, None)
            if row is None:
                return False
            assert self._matrix is not None
            last = len(self._keys) - 1
            if row != last:
                moved = self._keys[last]
                self._matrix[row] = self._matrix[last]
                self._parts[row] = self._parts[last]
                self._keys[row] = moved
                self._row[moved] = row
            self._keys.pop()
            return True

    def clear(self) -> None:
        """Remove every row (the allocated matrix is kept)."""
        with self._lock:
            self._keys.clear()
            self._row.clear()

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
            n = len(self._keys)
            if n == 0 or self._matrix is None:
                return []
            query = as_unit_vector(vector, self._dim)
            scores = self._matrix[:n] @ query
            if partition is not None:
                pid = self._part_ids.get(partition)
                if pid is None:
                    return []
                scores = np.where(self._parts[:n] == pid, scores, -np.inf)
            if k == 1:
                order = np.array([int(np.argmax(scores))])
            else:
                k = min(k, n)
                top = np.argpartition(-scores, k - 1)[:k]
                order = top[np.argsort(-scores[top])]
            return [(self._keys[i], float(scores[i])) for i in order if np.isfinite(scores[i])]
