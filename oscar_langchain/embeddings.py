"""Default embeddings: offline, deterministic, no model download (scikit-learn hashing).

Each text is hashed into word unigrams and bigrams and character 3- to 5-grams (within
word boundaries) by scikit-learn's ``HashingVectorizer`` (MurmurHash3 with a fixed seed:
the same vector in every process), the two parts are weighted, summed with sublinear
term frequencies and L2-normalised to float32. Cosine similarity is then a dot product.

It captures lexical and sub-word overlap, not meaning: for paraphrase-level semantics plug
in any LangChain ``Embeddings`` (e.g. all-MiniLM-L6-v2); every oscar component takes one.

Example:
    >>> emb = OfflineEmbeddings(n_features=256)
    >>> v = emb.embed_query("The cat sat on the mat.")
    >>> len(v), round(sum(x * x for x in v), 5)
    (256, 1.0)
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator
from sklearn.feature_extraction.text import HashingVectorizer

from oscar_langchain.errors import ConfigurationError

__all__ = ["OfflineEmbeddings"]


class OfflineEmbeddings(BaseModel, Embeddings):
    """LangChain ``Embeddings`` that work offline and deterministically.

    Attributes:
        n_features: dimension of the vectors (a power of two keeps hashing uniform).
        char_weight: weight of the character n-gram part against the word part.
        lowercase: fold case before hashing.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_features: int = Field(default=1024, ge=16, le=1 << 20)
    """Dimension of the vectors."""
    char_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    """Share of the character n-gram part (the word part gets ``1 - char_weight``)."""
    lowercase: bool = True
    """Fold case before hashing."""

    _word: HashingVectorizer = PrivateAttr()
    _char: HashingVectorizer = PrivateAttr()

    @field_validator("n_features")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"n_features must be a power of two, got {value}")
        return value

    def model_post_init(self, context: Any, /) -> None:
        """Build the two vectorizers (stateless: nothing is fitted)."""
        common: dict[str, Any] = {
            "n_features": self.n_features,
            "lowercase": self.lowercase,
            "alternate_sign": False,
            "norm": None,
            "dtype": np.float32,
        }
        self._word = HashingVectorizer(analyzer="word", ngram_range=(1, 2), **common)
        self._char = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common)

    def embed_array(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts`` into an ``(n, n_features)`` float32 matrix of unit rows.

        An empty (or all-whitespace) text gets the zero vector.
        """
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise ConfigurationError("texts", "must be a list of str")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ConfigurationError(f"texts[{i}]", f"must be a str, got {type(text).__name__}")
        if not texts:
            return np.zeros((0, self.n_features), dtype=np.float32)
        word = self._word.transform(texts)
        char = self._char.transform(texts)
        for part in (word, char):
            np.log1p(part.data, out=part.data)
            norms = np.sqrt(np.asarray(part.multiply(part).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            part.data /= np.repeat(norms, np.diff(part.indptr)).astype(np.float32)
        dense = ((1.0 - self.char_weight) * word + self.char_weight * char).toarray()
        out = np.ascontiguousarray(dense, dtype=np.float32)
        lengths = np.linalg.norm(out, axis=1, keepdims=True)
        lengths[lengths == 0] = 1.0
        out /= lengths
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (LangChain ``Embeddings`` API)."""
        return self.embed_array(texts).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (LangChain ``Embeddings`` API)."""
        if not isinstance(text, str):
            raise ConfigurationError("text", f"must be a str, got {type(text).__name__}")
        return self.embed_array([text])[0].tolist()  # type: ignore[no-any-return]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents off the event loop."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one query off the event loop."""
        return await asyncio.to_thread(self.embed_query, text)
