"""Sentence segmentation with exact character offsets (pure: no LangChain import).

A segmenter turns a text into :class:`Segment` spans that **partition** it: the first
starts at 0, each one ends where the next starts, the last ends at ``len(text)``, and
each segment carries its trailing whitespace. Chunks built from segments are therefore
exact source spans that reassemble into the input.

:class:`SentenceSegmenter` knows Markdown structure (headings, fenced code blocks, list
items, blank-line paragraphs) and prose rules (abbreviations such as ``e.g.`` or
``Dr.``, initials, decimals such as ``3.14``, URLs, ellipses). Any callable of the
:data:`Segmenter` shape can replace it; :func:`segmenter_from_sentences` adapts a
function returning sentence strings (``nltk.sent_tokenize``, spaCy...).
:func:`split_oversized` cuts a sentence longer than a token limit at its best
lower-level boundary (line, clause, word, character).

Example:
    >>> seg = SentenceSegmenter()
    >>> [s.text("Dr. Smith paid $3.50. See https://a.io/x.html now!")
    ...  for s in seg.segment("Dr. Smith paid $3.50. See https://a.io/x.html now!")]
    ['Dr. Smith paid $3.50. ', 'See https://a.io/x.html now!']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_ABBREVIATIONS",
    "Segment",
    "SegmentKind",
    "Segmenter",
    "SentenceSegmenter",
    "segmenter_from_sentences",
    "spans_to_segments",
    "split_oversized",
]

SegmentKind = Literal["sentence", "heading", "code", "list_item"]

DEFAULT_ABBREVIATIONS: frozenset[str] = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e",
        "cf", "fig", "figs", "no", "nos", "vol", "vols", "pp", "p", "ed", "eds", "al",
        "approx", "ca", "dept", "est", "gen", "gov", "sen", "rep", "col", "lt", "sgt",
        "capt", "cmdr", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
        "oct", "nov", "dec", "u.s", "u.k", "u.n", "a.m", "p.m", "ph.d", "viz",
        "resp", "eq", "eqs", "ref", "refs", "sec", "ch", "art", "inc", "ltd", "co", "corp",
    }
)  # fmt: skip
"""Lower-cased words (without their final period) after which a period ends no sentence."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One unit of text: ``text[start:end]``, trailing whitespace included.

    Attributes:
        start: offset of the first character.
        end: offset just past the last character.
        kind: what the unit is (a prose sentence, a heading, a code block, a list item).
        block_end: True when a paragraph or block ends with this segment (a strong boundary).
    """

    start: int
    end: int
    kind: SegmentKind = "sentence"
    block_end: bool = False

    def text(self, source: str) -> str:
        """The segment's text in ``source``."""
        return source[self.start : self.end]


Segmenter = Callable[[str], Sequence[Segment]]
"""Any callable mapping a text to segments that partition it (or nothing for blank text)."""

_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^[ \t]{0,3}(#{1,6}[ \t]|=+ .* =+\s*$|==== )")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+\u2022]|\d{1,3}[.)])[ \t]+\S")
# End of a sentence: terminal punctuation, optional closing quotes/brackets, whitespace.
_SENTENCE_END = re.compile(r"(?:[.!?\u2026]+|\.{3})[\"')\]\u2019\u201d]*(\s+)")
_ORDINAL = re.compile(r"[ \t]*\d{1,3}")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")
# Lower-level boundaries for an over-long sentence, best first: each cut falls after the match.
_FALLBACK_LEVELS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\n\s*"),
    re.compile(r"[,;:)\]]\s+|\s[-\u2013\u2014]+\s+"),
    re.compile(r"\s+"),
)


class SentenceSegmenter:
    r"""Markdown-aware sentence segmenter (the default).

    Args:
        abbreviations: lower-cased words (no final period) that do not end a sentence.

    Example:
        >>> seg = SentenceSegmenter()
        >>> text = "# Title\n\nFirst, e.g. this. Second.\n\n- one\n- two\n"
        >>> [text[s.start:s.end] for s in seg(text)]
        ['# Title\n\n', 'First, e.g. this. ', 'Second.\n\n', '- one\n', '- two\n']
    """

    def __init__(self, abbreviations: Iterable[str] = DEFAULT_ABBREVIATIONS) -> None:
        self.abbreviations = frozenset(a.lower().rstrip(".") for a in abbreviations)

    def __call__(self, text: str) -> list[Segment]:
        """Segment ``text`` (see :meth:`segment`)."""
        return self.segment(text)

    def segment(self, text: str) -> list[Segment]:
        """Segments partitioning ``text``; an empty list for blank text."""
        if not text.strip():
            return []
        segments: list[Segment] = []
        for start, end, kind in self._blocks(text):
            if kind in ("sentence", "list_item"):
                segments.extend(self._sentences(text, start, end, kind))
            else:
                segments.append(Segment(start, end, kind, block_end=True))
        return _absorb_blank(text, segments)

    def _blocks(self, text: str) -> list[tuple[int, int, SegmentKind]]:
        """Split ``text`` into blocks: code fences, headings, list items, paragraphs."""
        blocks: list[tuple[int, int, SegmentKind]] = []
        lines = text.splitlines(keepends=True)
        pos = 0
        para_start: int | None = None
        para_kind: SegmentKind = "sentence"
        fence: str | None = None
        fence_start = 0

        def close_paragraph(at: int) -> None:
            nonlocal para_start
            if para_start is not None and at > para_start:
                blocks.append((para_start, at, para_kind))
            para_start = None

        for line in lines:
            end = pos + len(line)
            if fence is not None:
                stripped = line.strip()
                if stripped.startswith(fence) and stripped.strip(fence[0]) == "":
                    blocks.append((fence_start, end, "code"))
                    fence = None
                pos = end
                continue
            opening = _FENCE.match(line)
            if opening:
                close_paragraph(pos)
                fence, fence_start = opening.group(1), pos
            elif not line.strip():
                close_paragraph(pos)
            elif _HEADING.match(line):
                close_paragraph(pos)
                blocks.append((pos, end, "heading"))
            elif _LIST_ITEM.match(line):
                close_paragraph(pos)
                para_start, para_kind = pos, "list_item"
            elif para_start is None:
                para_start, para_kind = pos, "sentence"
            pos = end
        if fence is not None:  # unclosed fence: the rest is code
            blocks.append((fence_start, len(text), "code"))
        close_paragraph(len(text))
        return blocks

    def _sentences(self, text: str, start: int, end: int, kind: SegmentKind) -> list[Segment]:
        """Sentences of the prose block ``text[start:end]``."""
        out: list[Segment] = []
        cursor = start
        block = text[start:end]
        for match in _SENTENCE_END.finditer(block):
            cut = start + match.end()
            if cut >= end or not self._ends_sentence(block, match.start()):
                continue
            out.append(Segment(cursor, cut, kind))
            cursor = cut
            kind = "sentence" if kind == "list_item" else kind
        out.append(Segment(cursor, end, kind, block_end=True))
        return out

    def _ends_sentence(self, block: str, punct_at: int) -> bool:
        """Whether the punctuation at ``block[punct_at]`` ends a sentence."""
        if block[punct_at] != ".":
            return True
        line_start = block.rfind("\n", 0, punct_at) + 1
        if _ORDINAL.fullmatch(block, line_start, punct_at):  # "1." opening a list item
            return False
        word = _WORD_BEFORE.search(block, max(0, punct_at - 20), punct_at)
        if word is None:
            return True
        token = word.group(1).lower()
        if token in self.abbreviations:
            return False
        # A lone capital letter is an initial ("J. Smith"); a dotted acronym too ("U.S.A").
        return not (len(token) == 1 and block[word.start()].isupper())


def _absorb_blank(text: str, segments: list[Segment]) -> list[Segment]:
    """Make ``segments`` partition ``text``: gaps and blank segments join their neighbours."""
    merged: list[Segment] = []
    for seg in segments:
        if merged and not text[seg.start : seg.end].strip():
            last = merged[-1]
            merged[-1] = Segment(last.start, seg.end, last.kind, True)
        else:
            merged.append(seg)
    if not merged:
        return []
    out = []
    for i, seg in enumerate(merged):
        start = 0 if i == 0 else seg.start
        end = merged[i + 1].start if i + 1 < len(merged) else len(text)
        out.append(Segment(start, end, seg.kind, seg.block_end))
    return out


def spans_to_segments(text: str, spans: Sequence[tuple[int, int]]) -> list[Segment]:
    """Segments partitioning ``text`` from ``(start, end)`` spans (gaps join the left span)."""
    segments = [Segment(s, e) for s, e in sorted(spans) if e > s]
    return _absorb_blank(text, segments) if text.strip() else []


def segmenter_from_sentences(split: Callable[[str], Iterable[str]]) -> Segmenter:
    """Adapt a function returning sentence strings into a :data:`Segmenter`.

    Each sentence is located in the text from left to right; whitespace the function
    dropped joins the preceding sentence.

    Example:
        >>> seg = segmenter_from_sentences(lambda t: t.split("|"))
        >>> [(s.start, s.end) for s in seg("ab|cd")]
        [(0, 3), (3, 5)]
    """

    def segment(text: str) -> list[Segment]:
        spans: list[tuple[int, int]] = []
        cursor = 0
        for sentence in split(text):
            piece = sentence.strip()
            if not piece:
                continue
            at = text.find(piece, cursor)
            if at < 0:
                continue
            spans.append((at, at + len(piece)))
            cursor = at + len(piece)
        return spans_to_segments(text, spans)

    return segment


def split_oversized(
    text: str,
    start: int,
    end: int,
    length: Callable[[str], int],
    max_tokens: int,
    *,
    level: int = 0,
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
    text: str, start: int, end: int, length: Callable[[str], int], max_tokens: int
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
