"""The chunker: sentences, embeddings and breaks into size-bounded exact spans (pure).

The pipeline, with no LangChain import:

1. :func:`prepare_units` segments the text (any :data:`Segmenter`), counts each
   sentence's tokens with the length function, and splits a sentence longer than
   ``max_tokens`` at its best lower-level boundary (line, clause, word, character).
2. The caller embeds each unit **once**, in batches (:func:`batched`); the sync and
   async shells differ only in how they wait for that.
3. :func:`chunk_units` chooses breaks (dynamic programming or a threshold rule),
   enforces ``max_tokens`` by the length function on the final text of every chunk,
   merges fragments under ``min_tokens``, and adds optional overlap.

Chunks are exact source spans: without overlap they partition the text, so
``"".join(text[c.start:c.end] for c in chunks) == text``.

Example:
    >>> import numpy as np
    >>> text = "Cats purr. Cats nap. Stocks fell. Bonds rose."
    >>> cfg = ChunkerConfig(max_tokens=6)
    >>> units = prepare_units(text, cfg, length=lambda s: len(s.split()))
    >>> emb = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=float)
    >>> [text[c.start:c.end] for c in chunk_units(units, emb, cfg)]
    ['Cats purr. Cats nap. ', 'Stocks fell. Bonds rose.']
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.splitter.breakpoints import (
    ThresholdType,
    optimal_partition,
    threshold_breaks,
    window_distances,
)
from oscar_langchain.splitter.segmenter import Segment, Segmenter, SentenceSegmenter

__all__ = [
    "BreakMode",
    "Chunk",
    "ChunkerConfig",
    "LengthFunction",
    "Units",
    "batched",
    "chunk_text",
    "chunk_units",
    "prepare_units",
    "split_oversized",
]

LengthFunction = Callable[[str], int]
BreakMode = Literal["optimal", "percentile", "standard_deviation", "interquartile", "gradient"]
T = TypeVar("T")

# Lower-level boundaries for an over-long sentence, best first: each cut falls after the match.
_FALLBACK_LEVELS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\n\s*"),
    re.compile(r"[,;:)\]]\s+|\s[-\u2013\u2014]+\s+"),
    re.compile(r"\s+"),
)


@dataclass(frozen=True)
class ChunkerConfig:
    """How to chunk; every field is validated and errors name it.

    Attributes:
        max_tokens: hard limit on a chunk's length (by the length function).
        min_tokens: chunks shorter than this merge into their most similar neighbour
            when the merge fits ``max_tokens`` (0 disables).
        overlap_tokens: up to this many tokens of the previous chunk's last sentences
            are repeated at the start of a chunk, within ``max_tokens`` (0 disables).
        mode: ``"optimal"`` (dynamic programming) or a threshold rule.
        threshold_amount: the rule's amount (percentile, number of standard deviations,
            IQR multiple); ``None`` takes the rule's default.
        window: sentences averaged on each side of a gap to score it.
        baseline: similarity below which two sentences are better apart in
            ``"optimal"`` mode. The default 0.0 groups the sentences with the most
            mutual similarity into chunks close to ``max_tokens``; higher values give
            smaller, tighter chunks; ``None`` uses the document's mean pairwise
            similarity (as Chroma's ClusterSemanticChunker).
        paragraph_weight: in ``"optimal"`` mode, what a break inside a paragraph costs
            (in summed similarity) more than one at a paragraph, heading or block
            boundary; 0 ignores the document's layout.
        batch_size: sentences per embeddings call.
        max_sentences: most sentences a chunk may hold in ``"optimal"`` mode.
    """

    max_tokens: int = 400
    min_tokens: int = 0
    overlap_tokens: int = 0
    mode: BreakMode = "optimal"
    threshold_amount: float | None = None
    window: int = 1
    baseline: float | None = 0.0
    paragraph_weight: float = 8.0
    batch_size: int = 256
    max_sentences: int = 256

    def __post_init__(self) -> None:
        for name in ("max_tokens", "window", "batch_size", "max_sentences"):
            if getattr(self, name) < 1:
                raise ConfigurationError(name, f"must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ConfigurationError("min_tokens", "must be between 0 and max_tokens")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ConfigurationError("overlap_tokens", "must be >= 0 and < max_tokens")
        if self.mode not in (
            "optimal",
            "percentile",
            "standard_deviation",
            "interquartile",
            "gradient",
        ):
            raise ConfigurationError("mode", f"unknown mode {self.mode!r}")
        if self.threshold_amount is not None and not math.isfinite(self.threshold_amount):
            raise ConfigurationError("threshold_amount", "must be a finite number")
        if self.paragraph_weight < 0:
            raise ConfigurationError("paragraph_weight", "must be >= 0")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk: the exact span ``text[start:end]``.

    Attributes:
        start: offset of its first character (overlap included).
        end: offset just past its last character.
        tokens: its length by the length function.
        score: distance (``1 - similarity``) across the break before it; ``None`` for
            the first chunk.
        overlap: how many of its first characters repeat the previous chunk.
    """

    start: int
    end: int
    tokens: int
    score: float | None = None
    overlap: int = 0


@dataclass(frozen=True)
class Units:
    """A text cut into embeddable units (sentences, or pieces of over-long ones)."""

    text: str
    spans: tuple[tuple[int, int], ...]
    tokens: tuple[int, ...]
    block_end: tuple[bool, ...]
    length: LengthFunction = field(repr=False)

    @property
    def texts(self) -> list[str]:
        """The units' texts, in order (what to embed)."""
        return [self.text[s:e] for s, e in self.spans]


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for at in range(0, len(items), size):
        yield items[at : at + size]


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(
            f"text: expected str (or a Document), got {type(text).__name__}; "
            "pass the document's text, e.g. doc.page_content"
        )
    return text


def split_oversized(
    text: str, start: int, end: int, length: LengthFunction, max_tokens: int, *, level: int = 0
) -> list[tuple[int, int]]:
    """Cut ``text[start:end]`` into spans of at most ``max_tokens`` at the best boundaries.

    Tries line breaks, then clause punctuation, then whitespace, then characters;
    pieces are packed greedily so that each span is as long as the limit allows.

    Raises:
        ValueError: when a single character is longer than ``max_tokens``.
    """
    if length(text[start:end]) <= max_tokens:
        return [(start, end)]
    if level >= len(_FALLBACK_LEVELS):
        return _split_characters(text, start, end, length, max_tokens)
    cuts = [start + m.end() for m in _FALLBACK_LEVELS[level].finditer(text, start, end)]
    bounds = [start] + [c for c in cuts if start < c < end] + [end]
    if len(bounds) == 2:
        return split_oversized(text, start, end, length, max_tokens, level=level + 1)
    spans: list[tuple[int, int]] = []
    cur = start
    for i in range(1, len(bounds)):
        nxt = bounds[i]
        if cur == bounds[i - 1] or length(text[cur:nxt]) <= max_tokens:
            continue
        spans.append((cur, bounds[i - 1]))
        cur = bounds[i - 1]
    spans.append((cur, end))
    out: list[tuple[int, int]] = []
    for s, e in spans:
        out.extend(split_oversized(text, s, e, length, max_tokens, level=level + 1))
    return out


def _split_characters(
    text: str, start: int, end: int, length: LengthFunction, max_tokens: int
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    cur = start
    while cur < end:
        if length(text[cur:end]) <= max_tokens:
            out.append((cur, end))
            break
        lo, hi = cur + 1, end  # the longest prefix that fits, by bisection
        if length(text[cur:lo]) > max_tokens:
            raise ValueError(
                f"max_tokens: the character {text[cur]!r} alone is longer than {max_tokens} tokens"
            )
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if length(text[cur:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        out.append((cur, lo))
        cur = lo
    return out


def prepare_units(
    text: str,
    config: ChunkerConfig,
    length: LengthFunction,
    segmenter: Segmenter | None = None,
) -> Units:
    """Segment ``text`` and split over-long sentences: the units to embed once each.

    Raises:
        TypeError: when ``text`` is not a string.
    """
    text = _check_text(text)
    segments: Sequence[Segment] = (segmenter or SentenceSegmenter())(text)
    spans: list[tuple[int, int]] = []
    tokens: list[int] = []
    block_end: list[bool] = []
    for seg in segments:
        count = length(text[seg.start : seg.end])
        if count <= config.max_tokens:
            pieces, counts = [(seg.start, seg.end)], [count]
        else:
            pieces = split_oversized(text, seg.start, seg.end, length, config.max_tokens)
            counts = [length(text[s:e]) for s, e in pieces]
        spans.extend(pieces)
        tokens.extend(counts)
        block_end.extend([False] * (len(pieces) - 1) + [seg.block_end])
    return Units(text, tuple(spans), tuple(tokens), tuple(block_end), length)


def chunk_units(units: Units, embeddings: npt.ArrayLike, config: ChunkerConfig) -> list[Chunk]:
    """Chunks of ``units.text`` from one embedding per unit (row ``i`` embeds unit ``i``)."""
    n = len(units.spans)
    if n == 0:
        return []
    emb = np.asarray(embeddings)
    emb = emb.reshape(n, -1) if emb.dtype == np.float32 else emb.astype(np.float64).reshape(n, -1)
    distances = window_distances(emb, config.window)
    counts = np.asarray(units.tokens, dtype=np.int64)
    if config.mode == "optimal":
        bonus = np.zeros(n)  # a break inside a paragraph costs paragraph_weight
        bonus[1:] = (
            np.asarray(units.block_end[:-1], dtype=np.float64) - 1.0
        ) * config.paragraph_weight
        starts = optimal_partition(
            emb,
            counts,
            config.max_tokens,
            baseline=config.baseline,
            max_sentences=config.max_sentences,
            break_bonus=bonus,
        )
    else:
        mode: ThresholdType = config.mode
        breaks = threshold_breaks(distances, mode, config.threshold_amount).tolist()
        starts = _enforce_estimate([0, *breaks], counts, distances, config.max_tokens)
    groups = _measure(units, starts, distances, config.max_tokens)
    if config.min_tokens:
        groups = _merge_small(units, groups, distances, config)
    chunks = [_chunk(units, a, b, distances, t) for a, b, t in groups]
    if config.overlap_tokens:
        chunks = _add_overlap(units, chunks, groups, config)
    return chunks


def chunk_text(
    text: str,
    embed: Callable[[list[str]], Sequence[Sequence[float]]],
    config: ChunkerConfig,
    length: LengthFunction,
    *,
    segmenter: Segmenter | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Chunk]:
    """Chunk ``text``, embedding each unit once with ``embed`` in ``config.batch_size`` batches."""
    units = prepare_units(text, config, length, segmenter)
    rows: list[Sequence[float]] = []
    for batch in batched(units.texts, config.batch_size):
        rows.extend(embed(list(batch)))
        if progress is not None:
            progress(len(batch))
    return chunk_units(units, np.asarray(rows, dtype=np.float32), config)


def _enforce_estimate(
    starts: list[int], counts: npt.NDArray[np.int64], distances: npt.NDArray[np.float64], limit: int
) -> list[int]:
    """Split groups whose summed unit tokens exceed ``limit`` at their most distant gap."""
    out: list[int] = []
    bounds = [*starts, len(counts)]
    stack = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)][::-1]
    while stack:
        a, b = stack.pop()
        if b - a > 1 and int(counts[a:b].sum()) > limit:
            cut = a + 1 + int(np.argmax(distances[a : b - 1]))
            stack.extend([(cut, b), (a, cut)])
        else:
            out.append(a)
    return out


def _measure(
    units: Units, starts: list[int], distances: npt.NDArray[np.float64], limit: int
) -> list[tuple[int, int, int]]:
    """``(first_unit, end_unit, tokens)`` per chunk, re-splitting any over ``limit``."""
    bounds = [*starts, len(units.spans)]
    stack = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)][::-1]
    groups: list[tuple[int, int, int]] = []
    while stack:
        a, b = stack.pop()
        tokens = units.tokens[a] if b - a == 1 else units.length(_span_text(units, a, b))
        if tokens > limit and b - a > 1:
            cut = a + 1 + int(np.argmax(distances[a : b - 1]))
            stack.extend([(cut, b), (a, cut)])
        else:
            groups.append((a, b, tokens))
    return groups


def _merge_small(
    units: Units,
    groups: list[tuple[int, int, int]],
    distances: npt.NDArray[np.float64],
    config: ChunkerConfig,
) -> list[tuple[int, int, int]]:
    """Merge groups under ``min_tokens`` into the more similar neighbour when it fits."""
    out = list(groups)
    i = 0
    while i < len(out):
        a, b, tokens = out[i]
        if tokens >= config.min_tokens or len(out) == 1:
            i += 1
            continue
        options = []
        if i > 0:
            options.append((distances[a - 1], i - 1))
        if i + 1 < len(out):
            options.append((distances[b - 1], i + 1))
        merged = False
        for _, j in sorted(options):
            lo, hi = min(i, j), max(i, j)
            start, end = out[lo][0], out[hi][1]
            count = units.length(_span_text(units, start, end))
            if count <= config.max_tokens:
                out[lo : hi + 1] = [(start, end, count)]
                i = lo
                merged = True
                break
        if not merged:
            i += 1
    return out


def _span_text(units: Units, first: int, end: int) -> str:
    return units.text[units.spans[first][0] : units.spans[end - 1][1]]


def _chunk(units: Units, a: int, b: int, distances: npt.NDArray[np.float64], tokens: int) -> Chunk:
    score = None if a == 0 else float(distances[a - 1])
    return Chunk(units.spans[a][0], units.spans[b - 1][1], tokens, score)


def _add_overlap(
    units: Units,
    chunks: list[Chunk],
    groups: list[tuple[int, int, int]],
    config: ChunkerConfig,
) -> list[Chunk]:
    """Prefix each chunk with the previous chunk's last units, within both limits."""
    out = [chunks[0]]
    for k in range(1, len(chunks)):
        chunk, (a, _, _) = chunks[k], groups[k]
        prev_first = groups[k - 1][0]
        best = chunk
        first = a
        while first - 1 > prev_first:  # the previous chunk keeps a sentence of its own
            first -= 1
            extra = sum(units.tokens[first:a])
            if extra > config.overlap_tokens:
                break
            start = units.spans[first][0]
            count = units.length(units.text[start : chunk.end])
            if count > config.max_tokens:
                break
            best = Chunk(start, chunk.end, count, chunk.score, chunk.start - start)
        out.append(best)
    return out
