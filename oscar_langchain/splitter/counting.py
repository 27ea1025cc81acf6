"""Exact token counts of many spans of one text from a single encoding pass.

Counting every sentence, then every chunk, encodes the text twice. With a tiktoken
encoding there is a shortcut that stays exact: a space between two ASCII letters is
a pre-token boundary of both ``o200k_base`` and ``cl100k_base`` (no split pattern lets
a word run past a space; the foundation's parallel encoder relies on the same fact), so
the ids of the whole text, cut at such a point, are the ids of the two sides. Hence,
for a span ``text[s:e]`` and the first and last such points ``p1 <= p2`` strictly
inside it::

    count(text[s:e]) == count(text[s:p1]) + ids_between(p1, p2) + count(text[p2:e])

where ``ids_between`` comes from prefix sums over one encoding of the whole text and
only the two short edge fragments are encoded again. A span without such a point is
encoded directly.

Example:
    >>> from oscar_langchain.tokens import TokenCounter
    >>> counter = TokenCounter()
    >>> text = "The cat sat on the mat. A dog barked twice at it."
    >>> spans = [(0, 24), (24, len(text)), (4, 40)]
    >>> SpanCounter(text, counter).count(spans) == [counter.count(text[s:e]) for s, e in spans]
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from oscar_langchain.tokens import TokenCounter

__all__ = ["SpanCounter"]

IntArray = npt.NDArray[np.int64]

# Byte length of each token id, per encoding, filled as ids are met (-1: not yet known).
_TOKEN_BYTES: dict[str, npt.NDArray[np.int64]] = {}


def _token_bytes(counter: TokenCounter, ids: IntArray) -> IntArray:
    """Byte length of each id in ``ids``."""
    encoding = counter.encoding
    table = _TOKEN_BYTES.get(encoding.name)
    if table is None:
        table = np.full(encoding.n_vocab, -1, dtype=np.int64)
        _TOKEN_BYTES[encoding.name] = table
    unknown = np.unique(ids[table[ids] < 0])
    for token in unknown.tolist():
        table[token] = len(encoding.decode_single_token_bytes(token))
    return table[ids]


class SpanCounter:
    """Token counts of spans of ``text``, identical to ``counter.count(text[s:e])``.

    Args:
        text: the text whose spans are counted.
        counter: the tiktoken-based counter to agree with.

    Example:
        >>> from oscar_langchain.tokens import TokenCounter
        >>> SpanCounter("Hello big world. Bye.", TokenCounter()).count([(0, 17), (17, 21)])
        [5, 2]
    """

    def __init__(self, text: str, counter: TokenCounter) -> None:
        self.text = text
        self._encode = counter.encoding.encode_ordinary
        ids = np.asarray(counter.encode(text), dtype=np.int64)
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        # Character offset of every byte offset (a continuation byte maps past its char).
        char_of_byte = np.zeros(raw.size + 1, dtype=np.int64)
        np.cumsum((raw & 0xC0) != 0x80, out=char_of_byte[1:])
        token_ends = char_of_byte[np.cumsum(_token_bytes(counter, ids))]
        # Safe points: the offset of a space between two ASCII letters (cut before it).
        letter = ((raw | 0x20) >= 0x61) & ((raw | 0x20) <= 0x7A)
        space = raw == 0x20
        safe_bytes = np.flatnonzero(space[1:-1] & letter[:-2] & letter[2:]) + 1
        self._safe = char_of_byte[safe_bytes]
        # Ids before each safe point (a token boundary falls exactly there).
        self._ids_before = np.searchsorted(token_ends, self._safe, side="right")

    def count(self, spans: Sequence[tuple[int, int]]) -> list[int]:
        """Token counts of ``text[s:e]`` for each ``(s, e)`` in ``spans``."""
        if not spans:
            return []
        bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        starts, ends = bounds[:, 0], bounds[:, 1]
        # A point p is safe inside [s, e) when both its letters are: s < p and p + 1 < e.
        first = np.searchsorted(self._safe, starts + 1, side="left")
        last = np.searchsorted(self._safe, ends - 2, side="right") - 1
        inside = (first <= last) & (first < self._safe.size) & (last >= 0)
        first = np.where(inside, first, 0)
        last = np.where(inside, last, 0)
        middle = self._ids_before[last] - self._ids_before[first] if self._safe.size else first
        p1 = self._safe[first] if self._safe.size else first
        p2 = self._safe[last] if self._safe.size else last
        encode, text = self._encode, self.text
        out: list[int] = []
        for k, (s, e) in enumerate(bounds.tolist()):
            if inside[k]:
                a, b = int(p1[k]), int(p2[k])
                out.append(len(encode(text[s:a])) + int(middle[k]) + len(encode(text[b:e])))
            else:
                out.append(len(encode(text[s:e])))
        return out
