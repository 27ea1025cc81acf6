r"""A fast regex tokenizer for BM25, with optional light stemming and stopwords.

Text is lower-cased, split on ``\w+`` runs, stopwords are dropped and a light
English "S-stemmer" (Harman, 1991: ``ies -> y``, ``es -> e``, ``s -> ''``) folds
plurals. Stemming results are memoised, so the per-token cost is one dict look-up.
Each step can be switched off.

Example:
    >>> Tokenizer()("The cats are sleeping on the mats!")
    ['cat', 'sleeping', 'mat']
    >>> Tokenizer(stopwords=None, stem=False)("The cats")
    ['the', 'cats']
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["ENGLISH_STOPWORDS", "Tokenizer", "light_stem"]

ENGLISH_STOPWORDS: frozenset[str] = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves""".split()  # noqa: SIM905 - a word list reads better as text
)
"""A compact English stopword list (the NLTK list minus contractions)."""

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=200_000)
def light_stem(word: str) -> str:
    """Fold an English plural to its singular (Harman's S-stemmer).

    Example:
        >>> [light_stem(w) for w in ["queries", "boxes", "cats", "glass", "corpus"]]
        ['query', 'boxe', 'cat', 'glass', 'corpus']
    """
    if len(word) <= 3 or word[-1] != "s":
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith(("us", "ss")):
        return word
    return word[:-1]


@dataclass(frozen=True)
class Tokenizer:
    """Split text into BM25 terms.

    Attributes:
        lowercase: fold case before splitting.
        stopwords: words to drop (``None`` or empty keeps every word).
        stem: apply :func:`light_stem` to each word.
        min_length: drop words shorter than this many characters.

    Example:
        >>> Tokenizer(min_length=3).many(["An ox and two boxes"])
        [['two', 'boxe']]
    """

    lowercase: bool = True
    stopwords: frozenset[str] | None = field(default=ENGLISH_STOPWORDS)
    stem: bool = True
    min_length: int = 1

    def __post_init__(self) -> None:
        if self.min_length < 1:
            from oscar_langchain.errors import ConfigurationError

            raise ConfigurationError("min_length", f"must be >= 1, got {self.min_length}")

    def __call__(self, text: str) -> list[str]:
        """Tokenize one text."""
        words = _WORD.findall(text.lower() if self.lowercase else text)
        stop = self.stopwords or frozenset()
        if self.min_length > 1:
            words = [w for w in words if len(w) >= self.min_length]
        if self.stem:
            return [light_stem(w) for w in words if w not in stop]
        return [w for w in words if w not in stop] if stop else words

    def many(self, texts: Iterable[str]) -> list[list[str]]:
        """Tokenize several texts."""
        return [self(t) for t in texts]

    def to_config(self) -> dict[str, Any]:
        """A JSON-serialisable description, read back by :meth:`from_config`."""
        return {
            "lowercase": self.lowercase,
            "stopwords": sorted(self.stopwords) if self.stopwords is not None else None,
            "stem": self.stem,
            "min_length": self.min_length,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Tokenizer:
        """Rebuild a tokenizer from :meth:`to_config`'s output."""
        stop = config.get("stopwords")
        return cls(
            lowercase=bool(config.get("lowercase", True)),
            stopwords=frozenset(stop) if stop is not None else None,
            stem=bool(config.get("stem", True)),
            min_length=int(config.get("min_length", 1)),
        )
