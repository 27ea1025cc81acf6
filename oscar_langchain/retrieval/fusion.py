"""Rank fusion: weighted RRF, min-max score combination and z-score combination.

Pure functions over ranked ``(id, score)`` lists, best first.

Example:
    >>> bm25 = [("a", 9.0), ("b", 4.0)]
    >>> dense = [("b", 0.9), ("c", 0.8)]
    >>> [doc_id for doc_id, _ in weighted_rrf([bm25, dense], [1.0, 1.0])]
    ['b', 'a', 'c']
    >>> [doc_id for doc_id, _ in score_fusion([bm25, dense], [1.0, 0.2])]
    ['a', 'b', 'c']
    >>> stats = [ScoreStats(1.0, 2.0), ScoreStats(0.2, 0.2)]  # over the whole corpus
    >>> [doc_id for doc_id, _ in zscore_fusion([bm25, dense], [1.0, 1.0], stats)]
    ['a', 'b', 'c']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

__all__ = [
    "Fusion",
    "Hits",
    "Ranking",
    "ScoreStats",
    "fuse",
    "score_fusion",
    "weighted_rrf",
    "zscore_fusion",
]

Ranking = Sequence[tuple[str, float]]
Fusion = Literal["rrf", "score", "zscore"]


class ScoreStats(NamedTuple):
    """Mean and standard deviation of one query's scores over all live documents.

    ``floor`` bounds the score of a document missing from the side's ranking (e.g. 0
    for BM25 when every matching document was returned); ``None`` means the ranking's
    lowest score.
    """

    mean: float
    std: float
    floor: float | None = None

    @classmethod
    def of(cls, scores: np.ndarray[Any, Any], n: int | None = None) -> ScoreStats:
        """Stats of ``scores``; with ``n``, of ``n`` documents whose absent entries are 0.

        Example:
            >>> ScoreStats.of(np.array([1.0, 3.0]), n=4)[:2]
            (1.0, 1.224744871391589)
        """
        count = len(scores) if n is None else n
        if count <= 0:
            return cls(0.0, 0.0)
        values = scores.astype(np.float64, copy=False)
        mean = float(values.sum()) / count
        variance = float(values @ values) / count - mean * mean
        return cls(mean, max(variance, 0.0) ** 0.5)


class Hits(NamedTuple):
    """One side's ranking, best first, with the query's score distribution."""

    ranking: list[tuple[str, float]]
    stats: ScoreStats


def _check(rankings: Sequence[Ranking], weights: Sequence[float]) -> None:
    if len(rankings) != len(weights):
        raise ValueError(f"{len(rankings)} rankings but {len(weights)} weights")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must be >= 0, got {list(weights)}")


def _ordered(totals: dict[str, float]) -> list[tuple[str, float]]:
    # Stable: equal fused scores keep first-seen order (dict order).
    return sorted(totals.items(), key=lambda item: -item[1])


def weighted_rrf(
    rankings: Sequence[Ranking], weights: Sequence[float], c: float = 60.0
) -> list[tuple[str, float]]:
    """Weighted reciprocal rank fusion: ``sum_i w_i / (c + rank_i(d))`` (ranks from 1)."""
    _check(rankings, weights)
    if c < 0:
        raise ValueError(f"c must be >= 0, got {c}")
    totals: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if weight == 0:
            continue
        for rank, (doc_id, _) in enumerate(ranking, start=1):
            totals[doc_id] = totals.get(doc_id, 0.0) + weight / (c + rank)
    return _ordered(totals)


def score_fusion(rankings: Sequence[Ranking], weights: Sequence[float]) -> list[tuple[str, float]]:
    """Combine min-max normalised scores: ``sum_i w_i * norm_i(d)`` (absent counts 0).

    A ranking whose scores are all equal normalises to 1 for each of its documents.
    """
    _check(rankings, weights)
    totals: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if weight == 0 or not ranking:
            continue
        scores = [s for _, s in ranking]
        low, span = min(scores), max(scores) - min(scores)
        for doc_id, score in ranking:
            norm = (score - low) / span if span > 0 else 1.0
            totals[doc_id] = totals.get(doc_id, 0.0) + weight * norm
    return _ordered(totals)


def zscore_fusion(
    rankings: Sequence[Ranking], weights: Sequence[float], stats: Sequence[ScoreStats]
) -> list[tuple[str, float]]:
    """Combine z-scores against each side's whole-corpus distribution for the query.

    ``sum_i w_i * (s_i(d) - mean_i) / std_i``. The statistics describe the query's
    scores over *all* documents, not only the returned top list, so a side whose best
    hits stand far out of its distribution (a confident side) counts for more than one
    whose scores are bunched, and neither side's top list is stretched to [0, 1] as
    min-max does. A document missing from a ranking gets the z-score of that side's
    ``floor`` (default: its lowest returned score, an upper bound of the missing
    document's). A side with ``std == 0`` adds nothing.
    """
    _check(rankings, weights)
    if len(stats) != len(rankings):
        raise ValueError(f"{len(rankings)} rankings but {len(stats)} score stats")
    sides = []
    for ranking, weight, stats_i in zip(rankings, weights, stats, strict=True):
        mean, std = stats_i.mean, stats_i.std
        if weight == 0 or not ranking or std <= 0:
            continue
        z = {doc_id: weight * (score - mean) / std for doc_id, score in ranking}
        floor = min(z.values()) if stats_i.floor is None else weight * (stats_i.floor - mean) / std
        sides.append((z, floor))
    totals: dict[str, float] = {}
    for ranking in rankings:
        for doc_id, _ in ranking:
            totals.setdefault(doc_id, 0.0)
    for doc_id in totals:
        totals[doc_id] = sum(z.get(doc_id, floor) for z, floor in sides)
    return _ordered(totals)


def fuse(
    method: Fusion,
    rankings: Sequence[Ranking],
    weights: Sequence[float],
    rrf_c: float = 60.0,
    stats: Sequence[ScoreStats] | None = None,
) -> list[tuple[str, float]]:
    """Dispatch to :func:`weighted_rrf`, :func:`score_fusion` or :func:`zscore_fusion`.

    Raises:
        ValueError: on an unknown method, or ``"zscore"`` without ``stats``.
    """
    if method == "rrf":
        return weighted_rrf(rankings, weights, rrf_c)
    if method == "score":
        return score_fusion(rankings, weights)
    if method == "zscore":
        if stats is None:
            raise ValueError("fusion 'zscore' needs the score stats of each ranking")
        return zscore_fusion(rankings, weights, stats)
    raise ValueError(f"unknown fusion method {method!r}; use 'rrf', 'score' or 'zscore'")
