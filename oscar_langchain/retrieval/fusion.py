"""Rank fusion: weighted reciprocal rank fusion and normalised score combination.

Pure functions over ranked ``(id, score)`` lists, best first.

Example:
    >>> bm25 = [("a", 9.0), ("b", 4.0)]
    >>> dense = [("b", 0.9), ("c", 0.8)]
    >>> [doc_id for doc_id, _ in weighted_rrf([bm25, dense], [1.0, 1.0])]
    ['b', 'a', 'c']
    >>> [doc_id for doc_id, _ in score_fusion([bm25, dense], [1.0, 0.2])]
    ['a', 'b', 'c']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = ["Fusion", "Ranking", "fuse", "score_fusion", "weighted_rrf"]

Ranking = Sequence[tuple[str, float]]
Fusion = Literal["rrf", "score"]


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


def fuse(
    method: Fusion, rankings: Sequence[Ranking], weights: Sequence[float], rrf_c: float = 60.0
) -> list[tuple[str, float]]:
    """Dispatch to :func:`weighted_rrf` (``"rrf"``) or :func:`score_fusion` (``"score"``)."""
    if method == "rrf":
        return weighted_rrf(rankings, weights, rrf_c)
    if method == "score":
        return score_fusion(rankings, weights)
    raise ValueError(f"unknown fusion method {method!r}; use 'rrf' or 'score'")
