"""Term-major postings segments of the BM25 index.

A segment holds the postings of internal documents ``[start, stop)`` as CSC
(``indptr`` per term, document ``rows``, term frequencies ``tf``), built from the
index's forward arrays. After any change to the index statistics its per-posting BM25
weights are recomputed once (:meth:`Segment.materialise`); a query then sums the query
terms' weight columns with ``np.bincount`` (:meth:`Segment.score`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from oscar_langchain.retrieval.bm25_params import F64, BM25Params

__all__ = ["Segment"]


@dataclass
class Segment:
    """Postings of internal documents ``[start, stop)``, term-major (CSC)."""

    start: int
    stop: int
    indptr: np.ndarray[Any, Any]
    rows: np.ndarray[Any, Any]
    tf: np.ndarray[Any, Any]
    weights: F64 | None = None
    version: int = -1

    @classmethod
    def build(
        cls,
        forward: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]],
        start: int,
        stop: int,
        n_terms: int,
    ) -> Segment:
        """Invert documents ``[start, stop)`` of the forward index ``(indptr, terms, tfs)``."""
        indptr, terms, tfs = forward
        lo, hi = int(indptr[start]), int(indptr[stop])
        csr = sparse.csr_matrix(
            (tfs[lo:hi].astype(np.float64), terms[lo:hi], indptr[start : stop + 1] - lo),
            shape=(stop - start, n_terms),
        )
        csc = csr.tocsc()
        csc.sort_indices()
        return cls(start, stop, csc.indptr, csc.indices.astype(np.int32), csc.data)

    @property
    def n_terms(self) -> int:
        return len(self.indptr) - 1

    def materialise(
        self, params: BM25Params, idf: F64, norm: F64, live: np.ndarray[Any, Any], version: int
    ) -> None:
        """Recompute the BM25 weight of every posting (0 for deleted documents).

        ``norm`` is ``k1 * (1 - b + b * dl / avgdl)`` per internal document.
        """
        rows = self.rows.astype(np.int64) + self.start
        columns = np.repeat(np.arange(self.n_terms, dtype=np.int32), np.diff(self.indptr))
        weights = idf[columns] * params.tf_part(self.tf, norm[rows])
        self.weights = np.where(live[rows], weights, 0.0)
        self.version = version

    def score(self, terms: Sequence[int], counts: Sequence[int]) -> F64 | None:
        """Scores of the segment's documents for query term ids (``None``: no match)."""
        weights = self.weights
        assert weights is not None
        rows, vals = [], []
        for term, count in zip(terms, counts, strict=True):
            if term >= self.n_terms:
                continue
            lo, hi = self.indptr[term], self.indptr[term + 1]
            if lo == hi:
                continue
            rows.append(self.rows[lo:hi])
            vals.append(weights[lo:hi] if count == 1 else weights[lo:hi] * count)
        if not rows:
            return None
        size = self.stop - self.start
        if len(rows) == 1:
            return np.bincount(rows[0], vals[0], minlength=size).astype(np.float64, copy=False)
        summed = np.bincount(np.concatenate(rows), np.concatenate(vals), size)
        return summed.astype(np.float64, copy=False)
