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

import contextvars
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.splitter.breakpoints import (
    ThresholdType,
    threshold_breaks,
    window_distances,
)
from oscar_langchain.splitter.partition import Objective, optimal_partition
from oscar_langchain.splitter.segmenter import (
    Segment,
    Segmenter,
    SentenceSegmenter,
    split_oversized,
)

__all__ = [
    "BreakMode",
    "Chunk",
    "ChunkerConfig",
    "LengthFunction",
    "SpanLength",
    "Units",
    "batched",
    "chunk_text",
    "chunk_units",
    "prepare_units",
    "split_oversized",
]

LengthFunction = Callable[[str], int]
SpanLength = Callable[[Sequence[tuple[int, int]]], list[int]]
"""Lengths of many spans ``(start, end)`` of one text, equal to the length function's."""
BreakMode = Literal["optimal", "percentile", "standard_deviation", "interquartile", "gradient"]
T = TypeVar("T")
_OVERLAP_CHARS = 1 << 16  # texts this long count their tokens on a thread while segmenting


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
        objective: what ``"optimal"`` mode maximises. The default ``"cohesion"`` puts
            breaks where the chunks come out most cohesive: the least within-chunk
            variance of the sentence embeddings, which does not favour one full chunk
            and a fragment over two halves. It uses the fewest chunks that
            ``max_tokens`` (and the layout, below) allows, plus one wherever the topic
            shifts as much as at the document's strongest shifts (``topic_quantile``).
            ``"pairs"`` maximises the summed pairwise similarity inside chunks less
            ``baseline``, adding a break wherever sentences are less similar than the
            baseline.
        topic_quantile: with ``objective="cohesion"``, how strong a topic shift must
            be to get a chunk of its own when the text would fit in fewer: a chunk is
            added where a break removes more within-chunk variance than the document's
            gaps at this quantile do (``partition.topic_shift_price``).
            The default 0.95 separates topics at about the strongest twentieth of the gaps;
            higher is fewer, fuller chunks; ``None`` never adds one (the fewest chunks).
        baseline: with ``objective="pairs"``, the similarity below which two
            sentences are better apart. The default 0.0 groups the sentences with the
            most mutual similarity into chunks close to ``max_tokens``; higher values
            give smaller, tighter chunks; ``None`` uses the document's mean pairwise
            similarity (as Chroma's ClusterSemanticChunker). ``"cohesion"`` ignores it.
        paragraph_weight: in ``"optimal"`` mode, what a break inside a paragraph costs
            (in similarity score) more than one at a paragraph, heading or block
            boundary. The default ``math.inf`` makes layout come first: the fewest
            breaks inside paragraphs that ``max_tokens`` allows, then the objective.
            A finite weight trades them against the score, whose scale depends on the
            objective, the chunks' sizes and the embeddings; 0 ignores the layout.
        batch_size: sentences per embeddings call.
        max_sentences: most sentences a chunk may hold in ``"optimal"`` mode.
    """

    max_tokens: int = 400
    min_tokens: int = 0
    overlap_tokens: int = 0
    mode: BreakMode = "optimal"
    threshold_amount: float | None = None
    window: int = 1
    objective: Objective = "cohesion"
    topic_quantile: float | None = 0.95
    baseline: float | None = 0.0
    paragraph_weight: float = math.inf
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
        if self.objective not in ("cohesion", "pairs"):
            raise ConfigurationError("objective", f"unknown objective {self.objective!r}")
        if self.topic_quantile is not None and not 0.0 < self.topic_quantile <= 1.0:
            raise ConfigurationError(
                "topic_quantile", f"must be in (0, 1] or None, got {self.topic_quantile}"
            )
        if self.threshold_amount is not None and not math.isfinite(self.threshold_amount):
            raise ConfigurationError("threshold_amount", "must be a finite number")
        if math.isnan(self.paragraph_weight) or self.paragraph_weight < 0:
            raise ConfigurationError("paragraph_weight", "must be >= 0 (math.inf allowed)")


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
    span_length: SpanLength | None = field(default=None, repr=False)

    def count_spans(self, spans: Sequence[tuple[int, int]]) -> list[int]:
        """Lengths of ``text[s:e]`` by the length function (by ``span_length`` if given)."""
        if self.span_length is None:
            return [self.length(self.text[s:e]) for s, e in spans]
        counts = self.span_length(spans)
        if len(counts) != len(spans):
            raise ValueError(f"span_length: returned {len(counts)} counts for {len(spans)} spans")
        return counts

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


def prepare_units(
    text: str,
    config: ChunkerConfig,
    length: LengthFunction,
    segmenter: Segmenter | None = None,
    *,
    span_length: Callable[[str], SpanLength] | None = None,
) -> Units:
    """Segment ``text`` and split over-long sentences: the units to embed once each.

    ``span_length``, when given, builds for ``text`` a function counting many of its
    spans at once, agreeing exactly with ``length`` (e.g. :class:`SpanCounter`).

    Raises:
        TypeError: when ``text`` is not a string.
    """
    text = _check_text(text)
    pending: Future[SpanLength] | None = None
    if span_length is not None and len(text) >= _OVERLAP_CHARS:
        # Encoding (native code, no GIL) overlaps the segmentation (Python) on a thread,
        # in a copy of the caller's context (span_length may be user code that reads it).
        pool = ThreadPoolExecutor(max_workers=1)
        pending = pool.submit(contextvars.copy_context().run, span_length, text)
        pool.shutdown(wait=False)
    segments: Sequence[Segment] = (segmenter or SentenceSegmenter())(text)
    counter: SpanLength | None = None
    if pending is not None:
        counter = pending.result()
    elif span_length is not None and segments:
        counter = span_length(text)
    probe = Units(text, (), (), (), length, counter)
    seg_counts = probe.count_spans([(seg.start, seg.end) for seg in segments])
    spans: list[tuple[int, int]] = []
    tokens: list[int] = []
    block_end: list[bool] = []
    for seg, count in zip(segments, seg_counts, strict=True):
        if count <= config.max_tokens:
            spans.append((seg.start, seg.end))
            tokens.append(count)
            block_end.append(seg.block_end)
            continue
        pieces = split_oversized(text, seg.start, seg.end, length, config.max_tokens)
        spans.extend(pieces)
        tokens.extend(length(text[s:e]) for s, e in pieces)
        block_end.extend([False] * (len(pieces) - 1) + [seg.block_end])
    return Units(text, tuple(spans), tuple(tokens), tuple(block_end), length, counter)


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
        bonus = np.zeros(n)  # a break inside a paragraph costs paragraph_weight (inf: avoided)
        inside = ~np.asarray(units.block_end[:-1], dtype=bool)
        # In one block (a transcript, PDF text without blank lines) every break is inside a
        # paragraph: the layout says nothing, and a penalty on all of them would only
        # minimise the number of chunks, ignoring the topics.
        if config.paragraph_weight and not inside.all():
            bonus[1:][inside] = -config.paragraph_weight
        starts = optimal_partition(
            emb,
            counts,
            config.max_tokens,
            baseline=config.baseline,
            max_sentences=config.max_sentences,
            break_bonus=bonus,
            objective=config.objective,
            topic_quantile=config.topic_quantile if config.objective == "cohesion" else None,
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
    span_length: Callable[[str], SpanLength] | None = None,
) -> list[Chunk]:
    """Chunk ``text``, embedding each unit once with ``embed`` in ``config.batch_size`` batches."""
    units = prepare_units(text, config, length, segmenter, span_length=span_length)
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
    """``(first_unit, end_unit, tokens)`` per chunk, re-splitting any over ``limit``.

    Every chunk of several units is measured on its final text (in one batch per
    round); a chunk over the limit is cut at its most distant gap and both halves are
    measured again, so the limit holds by the length function itself.
    """
    bounds = [*starts, len(units.spans)]
    pending = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    done: dict[tuple[int, int], int] = {}
    while pending:
        multi = [(a, b) for a, b in pending if b - a > 1]
        char_spans = [(units.spans[a][0], units.spans[b - 1][1]) for a, b in multi]
        counts = dict(zip(multi, units.count_spans(char_spans), strict=True))
        nxt: list[tuple[int, int]] = []
        for a, b in pending:
            tokens = counts[(a, b)] if b - a > 1 else units.tokens[a]
            if tokens > limit and b - a > 1:
                cut = a + 1 + int(np.argmax(distances[a : b - 1]))
                nxt.extend([(a, cut), (cut, b)])
            else:
                done[(a, b)] = tokens
        pending = nxt
    return [(a, b, done[(a, b)]) for a, b in sorted(done)]


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
