"""Where to break: similarity maths on per-sentence embeddings (pure numpy).

Every function here works on the embeddings of the sentences, computed **once**
(row ``i`` embeds sentence ``i``). Similarity between neighbouring windows is the
cosine between the mean embeddings of the ``window`` sentences on each side of a gap,
computed with cumulative sums: nothing is re-embedded.

Two ways to choose breaks:

* :func:`threshold_breaks` (here): a gap is a break when its distance
  (``1 - similarity``) is above a threshold set by percentile, standard deviation,
  interquartile range or gradient (the four rules of LangChain's ``SemanticChunker``).
* :func:`~oscar_langchain.splitter.partition.optimal_partition`: dynamic programming
  over sentence boundaries under a token limit per chunk, on the band of similarities
  computed here (:func:`band_similarities`).

Example:
    >>> import numpy as np
    >>> emb = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=float)
    >>> np.round(window_distances(emb), 2).tolist()
    [0.0, 0.9, 0.0]
    >>> threshold_breaks(window_distances(emb), "percentile", 50).tolist()
    [2]
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

__all__ = [
    "DEFAULT_AMOUNTS",
    "ThresholdType",
    "band_similarities",
    "breakpoint_threshold",
    "mean_pair_similarity",
    "threshold_breaks",
    "window_distances",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ThresholdType = Literal["percentile", "standard_deviation", "interquartile", "gradient"]

DEFAULT_AMOUNTS: dict[str, float] = {
    "percentile": 95.0,
    "standard_deviation": 3.0,
    "interquartile": 1.5,
    "gradient": 95.0,
}
"""Default threshold amount for each rule (those of LangChain's ``SemanticChunker``)."""


def _normalise(matrix: npt.ArrayLike) -> FloatArray:
    """Rows scaled to unit length (zero rows stay zero); float32 input stays float32."""
    rows = np.asarray(matrix)
    if rows.dtype not in (np.float32, np.float64):
        rows = rows.astype(np.float64)
    if rows.ndim != 2:
        raise ValueError("embeddings: expected a 2-D array (one row per sentence)")
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    if np.all(np.abs(norms - 1.0) <= 1e-5):  # already unit rows: no copy
        return rows  # type: ignore[return-value]
    norms = norms[:, None]
    return rows / np.where(norms == 0.0, 1.0, norms)  # type: ignore[no-any-return]


def window_distances(embeddings: npt.ArrayLike, window: int = 1) -> FloatArray:
    """Cosine distance across each gap between neighbouring windows of sentences.

    Args:
        embeddings: ``(n, d)`` sentence embeddings.
        window: how many sentences on each side of a gap are averaged.

    Returns:
        ``n - 1`` distances; entry ``i`` is for the gap between sentences ``i`` and ``i + 1``.
    """
    if window < 1:
        raise ValueError("window: must be >= 1")
    emb = _normalise(embeddings)
    n = emb.shape[0]
    if n < 2:
        return np.zeros(0)
    if window == 1:
        sims = np.einsum("ij,ij->i", emb[:-1], emb[1:])
    else:
        prefix = np.zeros((n + 1, emb.shape[1]), dtype=np.float64)
        np.cumsum(emb, axis=0, out=prefix[1:])
        gaps = np.arange(1, n)  # a gap sits before sentence `gaps`
        left = prefix[gaps] - prefix[np.maximum(gaps - window, 0)]
        right = prefix[np.minimum(gaps + window, n)] - prefix[gaps]
        sims = np.einsum("ij,ij->i", _normalise(left), _normalise(right))
    distances: FloatArray = np.clip(1.0 - sims.astype(np.float64), 0.0, 2.0)
    return distances


def breakpoint_threshold(distances: FloatArray, kind: ThresholdType, amount: float) -> float:
    """The threshold above which a distance (or, for ``gradient``, its gradient) is a break."""
    values = np.gradient(distances) if kind == "gradient" and distances.size > 1 else distances
    if values.size == 0:
        return float("inf")
    if kind in ("percentile", "gradient"):
        return float(np.percentile(values, amount))
    if kind == "standard_deviation":
        return float(np.mean(values) + amount * np.std(values))
    if kind == "interquartile":
        q1, q3 = np.percentile(values, [25, 75])
        return float(np.mean(values) + amount * (q3 - q1))
    raise ValueError(f"threshold_type: unknown rule {kind!r}")


def threshold_breaks(
    distances: FloatArray, kind: ThresholdType = "percentile", amount: float | None = None
) -> IntArray:
    """Indices of the sentences that start a new chunk under a threshold rule."""
    amount = DEFAULT_AMOUNTS[kind] if amount is None else amount
    threshold = breakpoint_threshold(distances, kind, amount)
    values = np.gradient(distances) if kind == "gradient" and distances.size > 1 else distances
    return (np.flatnonzero(values > threshold) + 1).astype(np.int64)


def mean_pair_similarity(embeddings: npt.ArrayLike) -> float:
    """Mean cosine similarity over all pairs of distinct rows, in ``O(n * d)``."""
    emb = _normalise(embeddings)
    n = emb.shape[0]
    if n < 2:
        return 0.0
    total = emb.sum(axis=0, dtype=np.float64)
    diagonal = float(np.einsum("ij,ij->", emb, emb, dtype=np.float64))
    return (float(total @ total) - diagonal) / float(n * (n - 1))


def band_similarities(
    embeddings: npt.ArrayLike, width: int, reach: npt.ArrayLike | None = None
) -> FloatArray:
    """``out[a, o] = cos(e_a, e_{a+o})`` for ``0 <= o < width`` (NaN where not computed).

    Computed block by block with matrix products. ``reach[a]`` (default ``width``) bounds
    the offsets needed from row ``a``; blocks only compute what their rows reach, so the
    cost is ``O(n * (block + mean reach) * d)``.
    """
    emb = _normalise(embeddings)
    n = emb.shape[0]
    needs = np.full(n, width) if reach is None else np.minimum(np.asarray(reach), width)
    out = np.full((n, width), np.nan)
    offsets = np.arange(width)
    block = max(16, width)
    # Small products: one BLAS thread is faster and steadier than several on a busy machine.
    with threadpool_limits(limits=1, user_api="blas"):
        _fill_band(emb, out, needs, offsets, block)
    return out


def _fill_band(
    emb: FloatArray,
    out: FloatArray,
    needs: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    block: int,
) -> None:
    n = emb.shape[0]
    for first in range(0, n, block):
        rows = emb[first : first + block]
        r_idx = np.arange(rows.shape[0])[:, None]
        stop = min(n, first + int((r_idx[:, 0] + needs[first : first + block]).max()))
        gram = rows @ emb[first:stop].T  # gram[r, c]: sim of rows first+r and first+c
        c_idx = r_idx + offsets[None, :]
        valid = c_idx < gram.shape[1]
        rr = np.broadcast_to(r_idx, c_idx.shape)[valid]
        out[first : first + rows.shape[0]][valid] = gram[rr, c_idx[valid]]
