from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oscar_langchain.splitter.breakpoints import (
    band_similarities,
    breakpoint_threshold,
    mean_pair_similarity,
    threshold_breaks,
    window_distances,
)
from oscar_langchain.splitter.partition import optimal_partition, topic_shift_price


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_window_distances_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(9, 5))
    for window in (1, 2, 3):
        got = window_distances(emb, window)
        e = unit(emb)
        want = []
        for gap in range(1, 9):
            left = e[max(0, gap - window) : gap].mean(axis=0)
            right = e[gap : gap + window].mean(axis=0)
            want.append(1 - left @ right / np.linalg.norm(left) / np.linalg.norm(right))
        np.testing.assert_allclose(got, np.clip(want, 0, 2), atol=1e-9)


def test_window_distances_edge_cases() -> None:
    assert window_distances(np.ones((1, 3))).size == 0
    with pytest.raises(ValueError, match="window"):
        window_distances(np.ones((3, 3)), 0)
    with pytest.raises(ValueError, match="2-D"):
        window_distances(np.ones(3))
    # zero vectors do not divide by zero; float32 stays accurate
    assert np.isfinite(window_distances(np.zeros((3, 2), dtype=np.float32))).all()


@pytest.mark.parametrize(
    ("kind", "amount", "expected"),
    [
        ("percentile", 50.0, [3, 5]),
        ("standard_deviation", 1.0, [3, 5]),
        ("interquartile", 0.5, [3, 5]),
        ("gradient", 60.0, [2]),
    ],
)
def test_threshold_rules(kind: str, amount: float, expected: list[int]) -> None:
    distances = np.array([0.1, 0.1, 0.9, 0.1, 0.8, 0.1])
    assert threshold_breaks(distances, kind, amount).tolist() == expected  # type: ignore[arg-type]


def test_threshold_defaults_and_errors() -> None:
    d = np.linspace(0, 1, 101)
    assert threshold_breaks(d).tolist() == list(range(97, 102))
    assert breakpoint_threshold(np.zeros(0), "percentile", 95) == float("inf")
    with pytest.raises(ValueError, match="threshold_type"):
        breakpoint_threshold(d, "nope", 1)  # type: ignore[arg-type]


def test_band_similarities() -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(150, 4))
    band = band_similarities(emb, 5)
    full = unit(emb) @ unit(emb).T
    for a in range(150):
        for o in range(5):
            if a + o < 150:
                assert band[a, o] == pytest.approx(full[a, a + o])
            else:
                assert np.isnan(band[a, o])


def test_mean_pair_similarity() -> None:
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(7, 3))
    full = unit(emb) @ unit(emb).T
    assert mean_pair_similarity(emb) == pytest.approx(full[~np.eye(7, dtype=bool)].mean())
    assert mean_pair_similarity(emb[:1]) == 0.0


def feasible_partitions(counts: list[int], limit: int) -> Iterator[list[int]]:
    """Every partition's starts whose chunks fit ``limit`` (a lone sentence always does)."""
    for mask in itertools.product([0, 1], repeat=len(counts) - 1):
        starts = [0] + [i + 1 for i, m in enumerate(mask) if m]
        spans = itertools.pairwise([*starts, len(counts)])
        if all(b - a == 1 or sum(counts[a:b]) <= limit for a, b in spans):
            yield starts


def brute_force(emb: np.ndarray, counts: list[int], limit: int, baseline: float) -> float:
    sim = unit(emb) @ unit(emb).T - baseline
    best = -np.inf
    for starts in feasible_partitions(counts, limit):
        score = 0.0
        for a, b in itertools.pairwise([*starts, len(counts)]):
            score += sim[a:b, a:b][np.triu_indices(b - a, 1)].sum()
        best = max(best, score)
    return best


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 8).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(1, 6), min_size=n, max_size=n),
            st.integers(0, 10_000),
            st.integers(3, 12),
            st.floats(-0.5, 0.5),
        )
    )
)
def test_optimal_partition_is_optimal(args: tuple[list[int], int, int, float]) -> None:
    counts, seed, limit, baseline = args
    emb = np.random.default_rng(seed).normal(size=(len(counts), 3))
    starts = optimal_partition(emb, counts, limit, baseline=baseline)
    assert starts[0] == 0 and starts == sorted(set(starts))
    bounds = [*starts, len(counts)]
    sim = unit(emb) @ unit(emb).T - baseline
    score = 0.0
    for a, b in itertools.pairwise(bounds):
        assert b - a == 1 or sum(counts[a:b]) <= limit
        score += sim[a:b, a:b][np.triu_indices(b - a, 1)].sum()
    assert score == pytest.approx(brute_force(emb, counts, limit, baseline), abs=1e-9)


BONUS_CASES = st.integers(1, 8).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 6), min_size=n, max_size=n),  # token counts
        st.lists(st.sampled_from([0.0, 0.5, -0.5, -np.inf]), min_size=n, max_size=n),  # bonus
        st.integers(0, 10_000),  # embeddings seed
        st.integers(3, 12),  # max_tokens
        st.floats(-0.5, 0.5),  # baseline
    )
)


def partition_value(
    emb: np.ndarray,
    starts: list[int],
    baseline: float,
    bonus: list[float],
    objective: str = "pairs",
) -> tuple[int, int, float]:
    """(avoided starts, chunks, score) of a partition: what the lexicographic objective ranks.

    ``"cohesion"`` scores a chunk of m sentences 2/m times its pair sum.
    """
    sim = unit(emb) @ unit(emb).T - baseline
    bounds = [*starts, len(emb)]
    avoided = sum(1 for a in starts[1:] if bonus[a] == -np.inf)
    score = sum(bonus[a] for a in starts[1:] if bonus[a] != -np.inf)
    for a, b in itertools.pairwise(bounds):
        pairs = sim[a:b, a:b][np.triu_indices(b - a, 1)].sum()
        score += 2 / (b - a) * pairs if objective == "cohesion" else pairs
    return avoided, len(starts), score


@settings(max_examples=60, deadline=None)
@given(BONUS_CASES)
def test_optimal_partition_avoids_minus_inf_starts_first(
    args: tuple[list[int], list[float], int, int, float],
) -> None:
    counts, bonus, seed, limit, _ = args
    emb = np.random.default_rng(seed).normal(size=(len(counts), 3))
    starts = optimal_partition(emb, counts, limit, baseline=0.0, break_bonus=bonus)
    bounds = [*starts, len(counts)]
    assert all(b - a == 1 or sum(counts[a:b]) <= limit for a, b in itertools.pairwise(bounds))
    # brute force: fewest avoided starts, then score
    values = [partition_value(emb, c, 0.0, bonus) for c in feasible_partitions(counts, limit)]
    best = max(values, key=lambda v: (-v[0], v[2]))
    avoided, _, score = partition_value(emb, starts, 0.0, bonus)
    assert avoided == best[0]
    assert score == pytest.approx(best[2], abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(BONUS_CASES)
def test_cohesion_is_fewest_avoided_then_fewest_chunks_then_least_variance(
    args: tuple[list[int], list[float], int, int, float],
) -> None:
    counts, bonus, seed, limit, baseline = args
    emb = np.random.default_rng(seed).normal(size=(len(counts), 3))
    starts = optimal_partition(
        emb, counts, limit, baseline=baseline, break_bonus=bonus, objective="cohesion"
    )
    bounds = [*starts, len(counts)]
    assert all(b - a == 1 or sum(counts[a:b]) <= limit for a, b in itertools.pairwise(bounds))
    # brute force, scored without the baseline (which changes nothing under "cohesion")
    values = [
        partition_value(emb, c, 0.0, bonus, "cohesion") for c in feasible_partitions(counts, limit)
    ]
    best = max(values, key=lambda v: (-v[0], -v[1], v[2]))
    avoided, chunks, score = partition_value(emb, starts, 0.0, bonus, "cohesion")
    assert (avoided, chunks) == best[:2]
    assert score == pytest.approx(best[2], abs=1e-9)


def within_chunk_variance(emb: np.ndarray, starts: list[int]) -> float:
    rows = unit(emb)
    bounds = [*starts, len(emb)]
    return sum(
        float(((rows[a:b] - rows[a:b].mean(axis=0)) ** 2).sum())
        for a, b in itertools.pairwise(bounds)
    )


@settings(max_examples=80, deadline=None)
@given(BONUS_CASES, st.floats(1.0, 3.0))
def test_priced_cohesion_is_fewest_avoided_then_least_variance_plus_price(
    args: tuple[list[int], list[float], int, int, float], price: float
) -> None:
    counts, bonus, seed, limit, _ = args
    emb = np.random.default_rng(seed).normal(size=(len(counts), 3))
    starts = optimal_partition(
        emb, counts, limit, break_bonus=bonus, objective="cohesion", chunk_price=price
    )
    bounds = [*starts, len(counts)]
    assert all(b - a == 1 or sum(counts[a:b]) <= limit for a, b in itertools.pairwise(bounds))

    # brute force: fewest avoided starts, then the least variance + price per chunk, less
    # the finite bonuses
    def value(c: list[int]) -> tuple[int, float]:
        avoided, chunks, _ = partition_value(emb, c, 0.0, bonus, "cohesion")
        finite = sum(bonus[a] for a in c[1:] if bonus[a] != -np.inf)
        return avoided, within_chunk_variance(emb, c) + price * chunks - finite

    best = min(value(c) for c in feasible_partitions(counts, limit))
    got = value(starts)
    assert got[0] == best[0]
    assert got[1] == pytest.approx(best[1], abs=1e-9)


def test_chunk_price_errors_and_pairs_ignore_it() -> None:
    emb = np.eye(3)
    for bad in (0.5, float("nan"), -1.0):
        with pytest.raises(ValueError, match="chunk_price"):
            optimal_partition(emb, [1, 1, 1], 10, objective="cohesion", chunk_price=bad)
    plain = optimal_partition(emb, [1, 1, 1], 2, baseline=0.0)
    assert optimal_partition(emb, [1, 1, 1], 2, baseline=0.0, chunk_price=1.0) == plain
    # orthogonal sentences: each added chunk removes 1 of variance, less than a price of
    # 1.5, so all three stay in one chunk
    assert optimal_partition(emb, [1, 1, 1], 3, objective="cohesion", chunk_price=1.5) == [0]


def test_topic_shift_price() -> None:
    # Two topics of six sentences: the gap between them removes the most variance; the
    # other gaps (inside a topic) remove none.
    emb = np.array([[1.0, 0.0]] * 6 + [[0.0, 1.0]] * 6)
    counts = [10] * 12
    # limit 40: four sentences a chunk, windows of two on each side of a gap
    assert topic_shift_price(emb, counts, 40, 1.0) == pytest.approx(2 * 2 / 4 * 2)
    assert topic_shift_price(emb, counts, 40, 0.5) == 1.0  # the floor: a median gap is 0
    # the price adds the chunk at the shift where the fewest chunks would not
    price = topic_shift_price(emb, counts, 120, 1.0)
    assert optimal_partition(emb, counts, 120, objective="cohesion") == [0]
    assert optimal_partition(emb, counts, 120, objective="cohesion", chunk_price=price - 1e-9) == [
        0,
        6,
    ]
    # optimal_partition computes the same price from its own similarity table
    rng = np.random.default_rng(7)
    noisy = emb + rng.normal(scale=0.3, size=emb.shape)
    for limit, q in ((40, 0.5), (60, 0.9), (120, 1.0)):
        price = topic_shift_price(noisy, counts, limit, q)
        by_price = optimal_partition(noisy, counts, limit, objective="cohesion", chunk_price=price)
        by_q = optimal_partition(noisy, counts, limit, objective="cohesion", topic_quantile=q)
        assert by_q == by_price
    with pytest.raises(ValueError, match="not both"):
        optimal_partition(
            emb, counts, 40, objective="cohesion", chunk_price=2.0, topic_quantile=0.9
        )
    with pytest.raises(ValueError, match="topic_quantile"):
        optimal_partition(emb, counts, 40, objective="cohesion", topic_quantile=0.0)
    # a sentence longer than half the limit leaves its gaps out; with none left, no price
    assert topic_shift_price(emb[:2], [30, 30], 40, 0.9) == math.inf
    assert topic_shift_price(emb[:1], [3], 40, 0.9) == math.inf  # no gap
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="quantile"):
            topic_shift_price(emb, counts, 40, bad)
    with pytest.raises(ValueError, match="token_counts"):
        topic_shift_price(emb, counts[:3], 40, 0.9)


def test_cohesion_score_is_the_within_chunk_variance() -> None:
    # For unit rows, 2/m times a chunk's pair sum is |sum|^2 / m - 1: maximising it with a
    # fixed number of chunks minimises the summed squared distance to the chunk means.
    rows = unit(np.random.default_rng(3).normal(size=(5, 4)))
    pairs = (rows @ rows.T)[np.triu_indices(5, 1)].sum()
    spread = ((rows - rows.mean(axis=0)) ** 2).sum()
    assert 2 / 5 * pairs == pytest.approx(5 - 1 - spread)


def test_optimal_partition_bonus_errors() -> None:
    emb = np.eye(3)
    for bad in ([0.0, np.nan, 0.0], [0.0, np.inf, 0.0]):
        with pytest.raises(ValueError, match="break_bonus"):
            optimal_partition(emb, [1, 1, 1], 10, break_bonus=bad)
    with pytest.raises(ValueError, match="break_bonus"):
        optimal_partition(emb, [1, 1, 1], 10, break_bonus=[0.0, 0.0])
    # -inf on the first sentence changes nothing: every partition starts there
    plain = optimal_partition(emb, [1, 1, 1], 2)
    assert optimal_partition(emb, [1, 1, 1], 2, break_bonus=[-np.inf, 0, 0]) == plain


def test_optimal_partition_topics_and_limits() -> None:
    emb = np.array([[1, 0]] * 3 + [[0, 1]] * 3, dtype=float)
    assert optimal_partition(emb, [1] * 6, max_tokens=10) == [0, 3]
    two = optimal_partition(emb, [1] * 6, max_tokens=2)
    assert len(two) == 4 and 3 in two  # pairs within each topic (two optimal ways)
    assert optimal_partition(emb[:2], [50, 1], max_tokens=10) == [0, 1]  # over-long alone
    with pytest.raises(ValueError, match="token_counts"):
        optimal_partition(emb, [1], max_tokens=10)
    with pytest.raises(ValueError, match="objective"):
        optimal_partition(emb, [1] * 6, 10, objective="magic")  # type: ignore[arg-type]
    # "cohesion": the fewest chunks (one here), then the topic shift when two are needed
    assert optimal_partition(emb, [1] * 6, 10, objective="cohesion") == [0]
    assert optimal_partition(emb, [1] * 6, 4, objective="cohesion") == [0, 3]
    assert optimal_partition(emb[:0], [], max_tokens=10) == []
    # a bonus for starting at sentence 2 moves the break there
    assert optimal_partition(emb, [1] * 6, 10, break_bonus=[0, 0, 9, 0, 0, 0]) == [0, 2, 3]
    # max_sentences caps chunk length
    capped = optimal_partition(emb, [1] * 6, 10, max_sentences=2)
    assert len(capped) == 4 and 3 in capped
