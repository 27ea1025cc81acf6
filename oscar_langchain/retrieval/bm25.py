"""BM25 over a sparse index, with incremental add/delete and exact statistics.

The pure core of the hybrid retriever (no LangChain import). Documents are kept in
a forward index (doc -> term frequencies, growable arrays) and in term-major
segments (``scipy.sparse`` CSC) built from it. A query sums the query terms'
columns (``np.bincount`` over the postings) and takes the top k with
``np.argpartition``, as bm25s does.

Unlike bm25s, the index grows: ``add`` builds a small segment for the new documents
and merges segments on a binary-counter schedule (each document is merged
O(log n) times, so adds are amortised). ``delete`` marks a document dead and
subtracts its terms from the document frequencies; dead documents are compacted
away once they are a quarter of the index. Statistics (N, average length, document
frequencies) are always exact, so scores after any sequence of adds and deletes equal
a fresh build's. Per-posting weights are computed lazily after a change, once for
all following queries.

Variants (``BM25Params.variant``):

* ``okapi``: rank_bm25's ``BM25Okapi`` (idf ``ln((N-df+.5)/(df+.5))``, negative idf
  floored at ``epsilon * mean idf``), tf part ``tf(k1+1)/(tf+k1(1-b+b dl/avgdl))``.
* ``lucene``: idf ``ln(1+(N-df+.5)/(df+.5))`` (never negative), tf part
  ``tf/(tf+k1(1-b+b dl/avgdl))``; as bm25s's ``lucene``.
* ``bm25plus``: idf ``ln((N+1)/df)``, okapi tf part ``+ delta``; as rank_bm25's
  ``BM25Plus``, whose ``delta`` also credits documents *without* the term:
  :meth:`BM25Index.get_scores` reproduces that, and ranking only returns matches.

Example:
    >>> index = BM25Index()
    >>> index.add(["a", "b", "c"], [["cat", "sat"], ["dog", "ran"], ["cat", "cat", "ran"]])
    >>> [doc_id for doc_id, _ in index.search(["cat"], k=2)]
    ['c', 'a']
    >>> index.delete(["c"])
    >>> [doc_id for doc_id, _ in index.search(["cat"], k=2)]
    ['a']
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from oscar_langchain.errors import ConfigurationError, RetrievalError
from oscar_langchain.retrieval._bm25_io import ARRAYS, check_consistent
from oscar_langchain.retrieval._buffer import Buffer
from oscar_langchain.retrieval._segment import Segment
from oscar_langchain.retrieval.bm25_params import F64, BM25Params, Variant
from oscar_langchain.retrieval.fusion import Hits, ScoreStats
from oscar_langchain.retrieval.persist import (
    atomic_directory,
    load_array,
    read_json,
    read_manifest,
    write_json,
    write_manifest,
)

__all__ = ["BM25Index", "BM25Params", "Variant"]

_FORMAT = "oscar-bm25"


class _View(NamedTuple):
    """One generation of the index, as a query reads it outside the lock."""

    segments: list[Segment]
    ids: list[str]
    """Ids by internal position (grows in place on add; replaced, not changed, on compact)."""
    n: int
    """Number of internal positions (live and deleted) at the snapshot."""
    idf: F64
    live: np.ndarray[Any, np.dtype[np.bool_]]
    """A copy of the live mask at the snapshot."""
    n_live: int
    allowed: np.ndarray[Any, np.dtype[np.int64]] | None
    """Internal positions of the allowed ids present at the snapshot (``None``: all)."""


class BM25Index:
    """An incremental BM25 index over token lists, keyed by string ids.

    Args:
        params: the BM25 variant and parameters.
        compact_ratio: compact when this fraction of stored documents is deleted.

    Thread-safe: mutations hold a lock; a search works on a snapshot.

    Example:
        >>> idx = BM25Index(BM25Params(variant="bm25plus"))
        >>> idx.add(["x", "y", "z"], [["red", "fox"], ["blue", "fox"], ["red", "red", "hen"]])
        >>> idx.search(["red"], k=1)[0][0], len(idx)
        ('z', 3)
    """

    def __init__(self, params: BM25Params | None = None, compact_ratio: float = 0.25) -> None:
        if not 0.0 < compact_ratio <= 1.0:
            raise ConfigurationError("compact_ratio", f"must be in (0, 1], got {compact_ratio}")
        self.params = params or BM25Params()
        self.compact_ratio = compact_ratio
        self._lock = threading.RLock()
        self._vocab: dict[str, int] = {}
        self._terms: list[str] = []
        self._df = Buffer(np.int64)
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._doc_len = Buffer(np.int64)
        self._live = Buffer(np.bool_)
        self._fwd_indptr = Buffer(np.int64)
        self._fwd_indptr.extend([0])
        self._fwd_terms = Buffer(np.int32)
        self._fwd_tfs = Buffer(np.int32)
        self._segments: list[Segment] = []
        self._n_live = 0
        self._total_len = 0
        self._version = 0
        self._idf: tuple[int, F64] = (-1, np.zeros(0))

    # -- introspection -------------------------------------------------------------
    def __len__(self) -> int:
        return self._n_live

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._pos

    def ids(self) -> list[str]:
        """Live document ids in index order."""
        with self._lock:
            live = self._live.view
            return [d for i, d in enumerate(self._ids) if live[i]]

    @property
    def version(self) -> int:
        """A counter bumped by every change to the documents (add, delete, compact)."""
        return self._version

    @property
    def vocabulary_size(self) -> int:
        """Number of distinct terms ever indexed."""
        return len(self._terms)

    def document_frequency(self, term: str) -> int:
        """Number of live documents containing ``term``."""
        tid = self._vocab.get(term)
        return 0 if tid is None else int(self._df.view[tid])

    def term_frequencies(self, doc_id: str) -> dict[str, int]:
        """The term counts of one document (used by pseudo-relevance feedback)."""
        with self._lock:
            pos = self._pos.get(doc_id)
            if pos is None:
                raise RetrievalError(f"unknown document id {doc_id!r}")
            lo, hi = self._fwd_indptr.view[pos], self._fwd_indptr.view[pos + 1]
            terms = self._fwd_terms.view[lo:hi]
            tfs = self._fwd_tfs.view[lo:hi]
            return {self._terms[t]: int(c) for t, c in zip(terms, tfs, strict=True)}

    # -- mutation ------------------------------------------------------------------
    def add(self, ids: Sequence[str], tokens: Sequence[Sequence[str]]) -> None:
        """Index documents; an id already present is replaced (upsert).

        Raises:
            ValueError: when ``ids`` and ``tokens`` differ in length or ids repeat.
        """
        if len(ids) != len(tokens):
            raise ValueError(f"ids has {len(ids)} entries but tokens has {len(tokens)}")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique within one add() call")
        if not ids:
            return
        with self._lock:
            existing = [d for d in ids if d in self._pos]
            if existing:
                self._delete(existing, compact=False)
            self._append(ids, tokens)
            self._version += 1
            self._maybe_compact()

    def _append(self, ids: Sequence[str], tokens: Sequence[Sequence[str]]) -> None:
        vocab = self._vocab
        flat = [vocab.setdefault(t, len(vocab)) for doc in tokens for t in doc]
        self._terms.extend(list(vocab)[len(self._terms) :])
        n_vocab = len(vocab)
        lengths = np.fromiter((len(doc) for doc in tokens), np.int64, len(tokens))
        doc_of = np.repeat(np.arange(len(ids), dtype=np.int64), lengths)
        keys, tfs = np.unique(doc_of * n_vocab + np.asarray(flat, np.int64), return_counts=True)
        docs, terms = np.divmod(keys, n_vocab)
        per_doc = np.bincount(docs, minlength=len(ids))
        base = self._fwd_indptr.view[-1]
        start = len(self._ids)
        self._fwd_indptr.extend(base + np.cumsum(per_doc))
        self._fwd_terms.extend(terms)
        self._fwd_tfs.extend(tfs)
        self._df.extend(np.zeros(n_vocab - len(self._df), np.int64))
        self._df.set(slice(0, n_vocab), self._df.view + np.bincount(terms, minlength=n_vocab))
        self._doc_len.extend(lengths)
        self._live.extend(np.ones(len(ids), np.bool_))
        for offset, doc_id in enumerate(ids):
            self._pos[doc_id] = start + offset
        self._ids.extend(ids)
        self._n_live += len(ids)
        self._total_len += int(lengths.sum())
        self._segments.append(self._build_segment(start, len(self._ids)))
        while len(self._segments) >= 2 and (
            2 * (self._segments[-1].stop - self._segments[-1].start)
            >= self._segments[-2].stop - self._segments[-2].start
        ):
            last = self._segments.pop()
            prev = self._segments.pop()
            self._segments.append(self._build_segment(prev.start, last.stop))

    def _build_segment(self, start: int, stop: int) -> Segment:
        forward = (self._fwd_indptr.view, self._fwd_terms.view, self._fwd_tfs.view)
        return Segment.build(forward, start, stop, len(self._terms))

    def delete(self, ids: Collection[str]) -> None:
        """Remove documents by id.

        Raises:
            RetrievalError: when an id is unknown (nothing is deleted then).
        """
        with self._lock:
            unknown = [d for d in ids if d not in self._pos]
            if unknown:
                raise RetrievalError(f"cannot delete unknown document ids: {unknown[:5]}")
            self._delete(list(dict.fromkeys(ids)), compact=True)

    def _delete(self, ids: Sequence[str], compact: bool) -> None:
        indptr, terms = self._fwd_indptr.view, self._fwd_terms.view
        positions = np.fromiter((self._pos.pop(d) for d in ids), np.int64, len(ids))
        gone = [terms[indptr[p] : indptr[p + 1]] for p in positions]
        if gone:
            self._df.set(
                slice(0, len(self._df)),
                self._df.view - np.bincount(np.concatenate(gone), minlength=len(self._df)),
            )
        self._live.set(positions, False)
        self._n_live -= len(positions)
        self._total_len -= int(self._doc_len.view[positions].sum())
        self._version += 1
        if compact:
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        if len(self._ids) - self._n_live > self.compact_ratio * max(len(self._ids), 1):
            self.compact()

    def compact(self) -> None:
        """Drop deleted documents from storage and rebuild one segment."""
        with self._lock:
            keep = np.flatnonzero(self._live.view)
            indptr = self._fwd_indptr.view
            lens = indptr[keep + 1] - indptr[keep]
            new_indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            gather = np.repeat(indptr[keep] - new_indptr[:-1], lens) + np.arange(new_indptr[-1])
            self._fwd_indptr = Buffer.wrap(new_indptr)
            self._fwd_terms = Buffer.wrap(self._fwd_terms.view[gather])
            self._fwd_tfs = Buffer.wrap(self._fwd_tfs.view[gather])
            self._doc_len = Buffer.wrap(self._doc_len.view[keep])
            self._live = Buffer.wrap(np.ones(len(keep), np.bool_))
            self._ids = [self._ids[i] for i in keep]
            self._pos = {d: i for i, d in enumerate(self._ids)}
            self._segments = [self._build_segment(0, len(keep))] if len(keep) else []
            self._version += 1

    # -- scoring -------------------------------------------------------------------
    def _snapshot(self, allowed_ids: Collection[str] | None = None) -> _View:
        """Materialise stale weights; return what a query needs, safe to use unlocked.

        Everything a query reads about the documents (ids, live mask, live count and the
        positions of ``allowed_ids``) is taken here, under the lock, from one generation
        of the index: a compaction after this call renumbers the documents, so a position
        looked up later would name another document.
        """
        with self._lock:
            stale = [s for s in self._segments if s.version != self._version]
            if self._idf[0] != self._version:
                self._idf = (self._version, self.params.idf(self._df.view, self._n_live))
            idf = self._idf[1]
            if stale:
                avgdl = self._total_len / self._n_live if self._n_live else 1.0
                k1, b = self.params.k1, self.params.b
                norm = k1 * (1 - b + b * self._doc_len.view / (avgdl or 1.0))
                for seg in stale:
                    seg.materialise(self.params, idf, norm, self._live.view, self._version)
            allowed = None
            if allowed_ids is not None:
                pos = self._pos
                allowed = np.fromiter(
                    (p for d in allowed_ids if (p := pos.get(d)) is not None), np.int64
                )
            return _View(
                list(self._segments),
                self._ids,
                len(self._ids),
                idf,
                self._live.view.copy(),
                self._n_live,
                allowed,
            )

    def _query_terms(self, tokens: Sequence[str]) -> tuple[list[int], list[int]]:
        counts = Counter(tokens)
        known = [(self._vocab[t], c) for t, c in counts.items() if t in self._vocab]
        return [t for t, _ in known], [c for _, c in known]

    def _raw_scores(
        self, tokens: Sequence[str], allowed_ids: Collection[str] | None = None
    ) -> tuple[F64, _View, list[int]]:
        view = self._snapshot(allowed_ids)
        terms, counts = self._query_terms(tokens)
        scores = np.zeros(view.n, dtype=np.float64)
        for seg in view.segments:
            part = seg.score(terms, counts)
            if part is not None:
                scores[seg.start : seg.stop] += part
        return scores, view, [t for t, c in zip(terms, counts, strict=True) for _ in range(c)]

    def get_scores(self, tokens: Sequence[str]) -> F64:
        """The score of every live document, in :meth:`ids` order (rank_bm25's shape)."""
        scores, view, flat_terms = self._raw_scores(tokens)
        if self.params.variant == "bm25plus" and flat_terms:
            # rank_bm25/bm25s credit delta * idf to documents *without* a query term too.
            scores = scores + self.params.delta * float(view.idf[flat_terms].sum())
        live: F64 = scores[view.live]
        return live

    def search(
        self, tokens: Sequence[str], k: int, allowed_ids: Collection[str] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` best matching documents as ``(id, score)``, best first.

        Only documents containing at least one query term are returned; ties go to
        the earlier-indexed document.

        Raises:
            ValueError: when ``k <= 0``.
        """
        return self._search(tokens, k, allowed_ids, with_stats=False).ranking

    def query(
        self, tokens: Sequence[str], k: int, allowed_ids: Collection[str] | None = None
    ) -> Hits:
        """:meth:`search`, plus the query's score distribution over all live documents.

        The mean and standard deviation feed
        :func:`~oscar_langchain.retrieval.fusion.zscore_fusion`; ``stats.floor`` is 0
        when fewer than ``k`` documents match (the rest score exactly 0).

        Example:
            >>> idx = BM25Index()
            >>> idx.add(["a", "b"], [["cat"], ["dog"]])
            >>> hits = idx.query(["cat"], k=1)
            >>> [doc_id for doc_id, _ in hits.ranking], hits.stats.mean == hits.ranking[0][1] / 2
            (['a'], True)
        """
        return self._search(tokens, k, allowed_ids, with_stats=True)

    def _search(
        self, tokens: Sequence[str], k: int, allowed_ids: Collection[str] | None, with_stats: bool
    ) -> Hits:
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        scores, view, _ = self._raw_scores(tokens, allowed_ids)
        ids = view.ids
        # Deleted documents score 0 (their weights are zeroed), so sums over all rows are
        # sums over the live ones.
        stats = ScoreStats.of(scores, view.n_live) if with_stats else ScoreStats(0.0, 0.0)
        candidates = np.flatnonzero(scores)
        if view.allowed is not None:
            allowed = np.zeros(len(scores), np.bool_)
            allowed[view.allowed] = True
            candidates = candidates[allowed[candidates]]
        if len(candidates) > k:
            candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
        cand_scores = scores[candidates]
        order = np.lexsort((candidates, -cand_scores))
        ranking = [(ids[candidates[i]], float(cand_scores[i])) for i in order]
        if len(ranking) < k:  # every match returned: the others score exactly 0
            stats = stats._replace(floor=0.0)
        return Hits(ranking, stats)

    # -- persistence ---------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to directory ``path`` atomically (see ``persist``)."""
        with atomic_directory(path) as tmp:
            self.dump_into(tmp)

    def dump_into(self, directory: Path) -> None:
        """Write the index files and manifest into an existing, empty ``directory``."""
        with self._lock:
            if len(self._ids) != self._n_live or len(self._segments) > 1:
                self.compact()
            view = self._snapshot()
            seg, ids = (view.segments[0] if view.segments else None), view.ids
            arrays = {
                "doc_len": self._doc_len.view,
                "fwd_indptr": self._fwd_indptr.view,
                "fwd_terms": self._fwd_terms.view,
                "fwd_tfs": self._fwd_tfs.view,
                "csc_indptr": seg.indptr if seg else np.zeros(1, np.int64),
                "csc_rows": seg.rows if seg else np.zeros(0, np.int32),
                "csc_tf": seg.tf if seg else np.zeros(0, np.float64),
                "csc_weights": seg.weights if seg else np.zeros(0, np.float64),
            }
            for name, arr in arrays.items():
                np.save(directory / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
            write_json(directory / "vocab.json", self._terms)
            write_json(directory / "ids.json", ids)
            meta = {"params": asdict(self.params), "compact_ratio": self.compact_ratio}
            write_manifest(directory, _FORMAT, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> BM25Index:
        """Read an index saved by :meth:`save`; ``mmap`` maps the arrays read-only.

        Raises:
            RetrievalError: when the directory is missing, incomplete or inconsistent.
        """
        directory = Path(path)
        meta = read_manifest(directory, _FORMAT)["meta"]
        try:
            index = cls(BM25Params(**meta["params"]), float(meta["compact_ratio"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RetrievalError(f"corrupt index at {directory}: bad parameters: {exc}") from exc
        a = {n: load_array(directory, f"{n}.npy", mmap) for n in ARRAYS}
        terms, ids = read_json(directory / "vocab.json"), read_json(directory / "ids.json")
        check_consistent(directory, a, terms, ids)
        index._terms = list(terms)
        index._vocab = {t: i for i, t in enumerate(terms)}
        index._ids = list(ids)
        index._pos = {d: i for i, d in enumerate(ids)}
        index._doc_len = Buffer.wrap(a["doc_len"])
        index._fwd_indptr = Buffer.wrap(a["fwd_indptr"])
        index._fwd_terms = Buffer.wrap(a["fwd_terms"])
        index._fwd_tfs = Buffer.wrap(a["fwd_tfs"])
        index._live = Buffer.wrap(np.ones(len(ids), np.bool_))
        index._df = Buffer.wrap(np.bincount(a["fwd_terms"], minlength=len(terms)).astype(np.int64))
        index._n_live = len(ids)
        index._total_len = int(a["doc_len"].sum())
        if ids:
            index._segments = [
                Segment(
                    0, len(ids), a["csc_indptr"], a["csc_rows"], a["csc_tf"], a["csc_weights"], 0
                )
            ]
        return index
