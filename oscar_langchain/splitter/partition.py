"""The optimal partition: dynamic programming over sentence boundaries (pure numpy).

:func:`optimal_partition` chooses chunk starts under a token limit per chunk, in
``O(n * k * d)`` with ``k`` the most sentences a chunk can hold, on the band of
neighbouring similarities (:func:`~oscar_langchain.splitter.breakpoints.band_similarities`).
The default ``"cohesion"`` objective minimises the within-chunk variance of the
embeddings plus a price per chunk (:func:`topic_shift_price`: a chunk is added where the
topic shifts as much as at the document's strongest shifts), or, with no price, uses the
fewest chunks the limit allows; ``"pairs"`` maximises the summed pairwise similarity
inside chunks less a baseline, with as many chunks as that pays for.

Example:
    >>> import numpy as np
    >>> emb = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=float)
    >>> optimal_partition(emb, np.array([5, 5, 5, 5]), max_tokens=12)
    [0, 2]
    >>> optimal_partition(emb, [5, 5, 5, 5], 40, objective="cohesion")  # fewest chunks
    [0]
    >>> optimal_partition(emb, [5, 5, 5, 5], 40, objective="cohesion", chunk_price=1.5)
    [0, 2]
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from oscar_langchain.splitter.breakpoints import (
    FloatArray,
    IntArray,
    _normalise,
    band_similarities,
    mean_pair_similarity,
)

__all__ = ["Objective", "optimal_partition", "topic_shift_price"]

Objective = Literal["cohesion", "pairs"]
"""What :func:`optimal_partition` maximises (see there)."""


def optimal_partition(
    embeddings: npt.ArrayLike,
    token_counts: npt.ArrayLike,
    max_tokens: int,
    *,
    baseline: float | None = None,
    max_sentences: int = 256,
    break_bonus: npt.ArrayLike | None = None,
    objective: Objective = "pairs",
    chunk_price: float = math.inf,
    topic_quantile: float | None = None,
) -> list[int]:
    """Chunk starts maximising within-chunk similarity under a token limit.

    Chunks hold at most ``max_tokens`` tokens (by ``token_counts``) unless one sentence
    alone is longer; the best partition is found by dynamic programming over sentence
    boundaries. With ``objective="pairs"`` a chunk scores the sum, over its pairs of
    sentences, of their cosine similarity less ``baseline``, and the partition with the
    highest total wins, however many chunks it has. With ``"cohesion"`` a chunk of ``m``
    sentences scores ``2 / m`` times its pair sum: for unit embeddings that is
    ``|sum|^2 / m - 1``, so the partition minimises the within-chunk variance (the summed
    squared distance of the sentences to their chunk's mean; Fisher's optimal grouping,
    Ward's criterion) plus ``chunk_price`` per chunk. With the default infinite price
    the partition has the fewest chunks the limit allows, and among those the least
    variance. A finite price (at least 1, the variance a split of unrelated sentences
    removes on average) adds a chunk wherever the split removes more variance than the
    price: where the topic shifts. Unlike the pair sum, which grows with the square of
    a chunk's size and so prefers one full chunk and a fragment to two halves, the
    variance places each break where the meaning changes, whatever the sizes on either
    side.

    Args:
        embeddings: ``(n, d)`` sentence embeddings.
        token_counts: ``n`` token counts, one per sentence.
        max_tokens: the most tokens a chunk may hold.
        baseline: ``"pairs"``: similarity below which two sentences are better apart;
            default the mean similarity of all pairs of distinct sentences in the
            document (as in Chroma's ClusterSemanticChunker). ``"cohesion"`` ignores it
            (with a fixed number of chunks it shifts every partition's score equally).
        max_sentences: cap on sentences per chunk (bounds time and memory).
        break_bonus: optional ``n`` rewards for starting a chunk at each sentence
            (e.g. at paragraph starts). ``-inf`` marks a start to avoid: the partition
            uses as few of those as the token limit allows, and among the partitions
            that do, optimises the objective (a lexicographic order: avoided starts,
            then, for ``"cohesion"`` with no price, chunks, then score plus the finite
            bonuses).
        objective: ``"pairs"`` or ``"cohesion"`` (above).
        chunk_price: ``"cohesion"``: what a chunk costs in within-chunk variance
            (``math.inf``: the fewest chunks). ``"pairs"`` ignores it.
        topic_quantile: ``"cohesion"``: price a chunk at this quantile of the
            document's topic shifts instead (:func:`topic_shift_price`, computed from
            the same similarities as the partition).

    Returns:
        Sorted indices of the sentences that start chunks (always beginning with 0).

    Raises:
        ValueError: when ``token_counts`` or ``break_bonus`` do not match the
            embeddings, a bonus is NaN or ``+inf``, the objective is unknown,
            ``chunk_price`` is below 1 or NaN, ``topic_quantile`` is not in ``(0, 1]``,
            or both are given.
    """
    if objective not in get_args(Objective):
        raise ValueError(f"objective: unknown objective {objective!r}")
    if not chunk_price >= 1.0:  # NaN fails too
        raise ValueError(f"chunk_price: must be >= 1 (math.inf allowed), got {chunk_price}")
    if topic_quantile is not None:
        _check_quantile(topic_quantile)
        if math.isfinite(chunk_price):
            raise ValueError("topic_quantile: give it or chunk_price, not both")
    counts = np.asarray(token_counts, dtype=np.int64)
    n = counts.size
    if n == 0:
        return []
    emb = _normalise(embeddings)
    if emb.shape[0] != n:
        raise ValueError(f"token_counts: {n} counts for {emb.shape[0]} embeddings")
    prefix, longest, band = _fitting_band(emb, counts, max_tokens, max_sentences)
    width = band.shape[1]
    if objective == "cohesion":
        baseline = 0.0
    elif baseline is None:
        baseline = mean_pair_similarity(emb)
    score, largest_gain = _pair_sums(band, baseline)
    price = math.inf
    if objective == "cohesion":
        price = chunk_price
        if topic_quantile is not None:
            price = _price(_gap_shifts(score, prefix, max_tokens), topic_quantile)
        # 2 / m times the pair sum: each chunk then scores at most (m - 1) * largest_gain.
        score[:, 1:] *= 2.0 / np.arange(1, width + 1)
        score_range = n * largest_gain
    else:
        score_range = n * (width - 1) / 2 * largest_gain  # at most n (width - 1) / 2 pairs
    bonus = _tier_bonus(break_bonus, n, objective, score_range, price)
    best = np.full(n + 1, -np.inf)
    best[0] = 0.0
    back = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        usable = int(longest[end - 1])
        first = end - usable
        # Candidates start at first..end-1, i.e. chunk lengths usable..1 (longest first,
        # so that ties favour fewer chunks); all views, no copies.
        totals = best[first:end] + score[end - 1, usable:0:-1] + bonus[first:end]
        pick = int(totals.argmax())
        best[end] = totals[pick]
        back[end] = first + pick
    cuts: list[int] = []
    at = n
    while at > 0:
        at = int(back[at])
        cuts.append(at)
    return cuts[::-1]


def _fitting_band(
    emb: FloatArray, counts: IntArray, max_tokens: int, max_sentences: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """Token prefix sums, the longest chunk ending at each sentence, and the band.

    The band holds the similarities of the pairs that some chunk within ``max_tokens``
    (and ``max_sentences``) can hold: ``band[a, o] = sim(a, a + o)``, NaN beyond.
    """
    n = counts.size
    prefix = np.concatenate([[0], np.cumsum(counts)])
    # Longest chunk (in sentences) ending at each sentence, and the widest anywhere.
    first_fit = np.searchsorted(prefix, prefix[1:] - max_tokens, side="left")
    longest = np.clip(np.arange(1, n + 1) - first_fit, 1, max_sentences)
    last_fit = np.searchsorted(prefix, prefix[:-1] + max_tokens, side="right") - 1
    reach = np.clip(last_fit - np.arange(n), 1, max_sentences)  # longest chunk from each start
    return prefix, longest, band_similarities(emb, int(longest.max()), reach)


def _pair_sums(band: FloatArray, baseline: float) -> tuple[FloatArray, float]:
    """Each chunk's summed pairwise similarity less ``baseline``, and the largest term.

    ``score[j, m]`` is the pair sum of the chunk of ``m`` sentences ending with sentence
    ``j`` (``-inf`` where it would start before the text or leave the band).
    """
    n, width = band.shape
    # gain[j, o]: similarity of sentence j with sentence j - o, less the baseline.
    gain = np.zeros((n, width + 1))
    for o in range(1, width):
        gain[o:, o] = band[: n - o, o] - baseline
    cum_gain = np.cumsum(gain, axis=1)  # added by sentence j to a chunk of o sentences before it
    score = np.full((n, width + 1), -np.inf)
    score[:, 1] = 0.0
    for length in range(2, width + 1):
        score[length - 1 :, length] = (
            score[length - 2 : n - 1, length - 1] + cum_gain[length - 1 :, length - 1]
        )
    return score, float(np.nanmax(np.abs(gain)))  # column 0 is zeros: never all-NaN


def _gap_shifts(pair_sums: FloatArray, prefix: IntArray, max_tokens: int) -> FloatArray:
    """For each gap, the variance a break there removes from the half-chunks around it.

    The half-chunks are the sentences within ``max_tokens / 2`` tokens before and after
    the gap (at least one each). For unit rows, a span's squared sum is its length plus
    twice its pair sum, so Ward's merge cost ``ma * mb / (ma + mb) * |mean_a - mean_b|^2``
    comes from three lookups in the pair-sum table. Gaps whose two halves do not fit in
    the table (sentences longer than half the limit) are left out.
    """
    n, cols = pair_sums.shape
    gap = np.arange(1, n)
    half = max_tokens / 2
    first = np.minimum(np.searchsorted(prefix, prefix[gap] - half, side="left"), gap - 1)
    stop = np.maximum(np.searchsorted(prefix, prefix[gap] + half, side="right") - 1, gap + 1)
    both, before, after = stop - first, gap - first, stop - gap
    fits = both < cols
    both_col, before_col, after_col = (np.where(fits, m, 1) for m in (both, before, after))
    within = pair_sums[stop - 1, both_col]
    left = pair_sums[gap - 1, before_col]
    right = pair_sums[stop - 1, after_col]
    fits &= np.isfinite(within)
    ma, mb = before.astype(np.float64), after.astype(np.float64)
    # |Sa|^2 = ma + 2 left, |Sb|^2 = mb + 2 right, Sa . Sb = within - left - right
    sq_a, sq_b, dot = ma + 2 * left, mb + 2 * right, within - left - right
    with np.errstate(invalid="ignore"):
        ward = (mb / ma * sq_a + ma / mb * sq_b - 2 * dot) / (ma + mb)
    return np.asarray(ward[fits], dtype=np.float64)


def _check_quantile(quantile: float) -> None:
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"topic_quantile: must be in (0, 1], got {quantile}")


def _price(shifts: FloatArray, quantile: float) -> float:
    """The chunk price: the shifts' ``quantile``, at least 1 (``inf`` with no shift)."""
    if shifts.size == 0:
        return math.inf
    return max(1.0, float(np.quantile(shifts, quantile)))


def _tier_bonus(
    break_bonus: npt.ArrayLike | None,
    n: int,
    objective: Objective,
    score_range: float,
    chunk_price: float = math.inf,
) -> FloatArray:
    """Per-start bonuses that make the dynamic programme's objective lexicographic.

    The tiers as one integer per start: an avoided (``-inf``) start outweighs any number
    of chunks (at most ``n``), and, for ``"cohesion"`` with no price, each chunk costs
    one unit. A unit costs more than any two partitions' scores (plus the finite
    bonuses) can differ, so the optimum is lexicographic up to float rounding. A finite
    ``chunk_price`` is a finite bonus instead: each chunk's score already counts 1 of it.
    """
    bonus, avoid = _split_bonus(break_bonus, n)
    priced = objective == "cohesion" and math.isfinite(chunk_price)
    if priced:
        bonus[1:] -= chunk_price - 1.0
    tiers = np.zeros(n) if avoid is None else avoid.copy()
    if objective == "cohesion" and not priced:
        tiers *= n + 1
        tiers[1:] += 1.0
    if not tiers.any():
        return bonus
    unit_cost = 2.0 * (score_range + float(np.abs(bonus).sum())) + 1.0
    return bonus - tiers * unit_cost


def topic_shift_price(
    embeddings: npt.ArrayLike,
    token_counts: npt.ArrayLike,
    max_tokens: int,
    quantile: float,
    *,
    max_sentences: int = 256,
) -> float:
    """The price per chunk that ``optimal_partition(topic_quantile=quantile)`` uses.

    Every gap between two sentences is scored by the variance that a break there
    removes from the half-chunks on either side: Ward's merge cost between the
    sentences within ``max_tokens / 2`` tokens before the gap and those within
    ``max_tokens / 2`` after it. The price is that score's ``quantile`` over the
    document (at least 1, what a split of unrelated sentences removes on average), so
    that the partition adds a chunk beyond the fewest only where the topic shifts about
    as much as at the document's strongest ``1 - quantile`` of gaps. The scale comes
    from the document, so the same ``quantile`` works for any embeddings and any
    ``max_tokens``. ``math.inf`` when there is no gap to score.

    Raises:
        ValueError: when ``quantile`` is not in ``(0, 1]`` or the counts do not match.
    """
    _check_quantile(quantile)
    emb = _normalise(embeddings)
    counts = np.asarray(token_counts, dtype=np.int64)
    n = emb.shape[0]
    if counts.size != n:
        raise ValueError(f"token_counts: {counts.size} counts for {n} embeddings")
    if n < 2:
        return math.inf
    prefix, _, band = _fitting_band(emb, counts, max_tokens, max_sentences)
    pair_sums, _ = _pair_sums(band, 0.0)
    return _price(_gap_shifts(pair_sums, prefix, max_tokens), quantile)


def _split_bonus(break_bonus: npt.ArrayLike | None, n: int) -> tuple[FloatArray, FloatArray | None]:
    """The finite part of ``break_bonus`` and, when it has ``-inf`` entries, their 0/1 mask."""
    if break_bonus is None:
        return np.zeros(n), None
    bonus = np.asarray(break_bonus, dtype=np.float64).reshape(-1)
    if bonus.size != n:
        raise ValueError(f"break_bonus: {bonus.size} values for {n} sentences")
    if np.isnan(bonus).any() or np.isposinf(bonus).any():
        raise ValueError("break_bonus: values must be finite or -inf")
    avoid = np.isneginf(bonus)
    finite = np.where(avoid, 0.0, bonus)
    avoid[0] = False  # the first chunk starts at 0 in every partition
    return finite, (avoid.astype(np.float64) if avoid.any() else None)
