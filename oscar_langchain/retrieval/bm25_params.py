"""BM25 variants and parameters: the idf and term-frequency formulas.

Example:
    >>> import numpy as np
    >>> BM25Params(variant="lucene").idf(np.array([1, 0]), n_docs=3).round(3).tolist()
    [0.981, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from oscar_langchain.errors import ConfigurationError

__all__ = ["F64", "BM25Params", "Variant"]

Variant = Literal["okapi", "lucene", "bm25plus"]
F64 = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class BM25Params:
    """BM25 parameters.

    Attributes:
        variant: ``okapi``, ``lucene`` or ``bm25plus`` (see the module docstring).
        k1: term-frequency saturation.
        b: document-length normalisation (0 = none, 1 = full).
        epsilon: ``okapi`` only: floor of negative idf, as a fraction of the mean idf.
        delta: ``bm25plus`` only: lower bound of a matching term's tf part.

    Example:
        >>> BM25Params(variant="okapi", k1=1.2).k1
        1.2
    """

    variant: Variant = "lucene"
    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25
    delta: float = 1.0

    def __post_init__(self) -> None:
        if self.variant not in ("okapi", "lucene", "bm25plus"):
            raise ConfigurationError("variant", f"unknown BM25 variant {self.variant!r}")
        if self.k1 < 0:
            raise ConfigurationError("k1", f"must be >= 0, got {self.k1}")
        if not 0.0 <= self.b <= 1.0:
            raise ConfigurationError("b", f"must be in [0, 1], got {self.b}")
        if self.delta < 0:
            raise ConfigurationError("delta", f"must be >= 0, got {self.delta}")

    def idf(self, df: np.ndarray[Any, Any], n_docs: int) -> F64:
        """Inverse document frequency of each term (0 for terms no live document has)."""
        d = df.astype(np.float64)
        present = d > 0
        out = np.zeros(len(d), dtype=np.float64)
        if self.variant == "okapi":
            raw = np.log(n_docs - d[present] + 0.5) - np.log(d[present] + 0.5)
            if raw.size:
                floor = self.epsilon * raw.mean()
                raw = np.where(raw < 0, floor, raw)
            out[present] = raw
        elif self.variant == "lucene":
            out[present] = np.log(1.0 + (n_docs - d[present] + 0.5) / (d[present] + 0.5))
        else:
            out[present] = np.log((n_docs + 1) / d[present])
        return out

    def tf_part(self, tf: F64, norm: F64) -> F64:
        """Term-frequency part given ``norm = k1 * (1 - b + b * dl / avgdl)``."""
        if self.variant == "lucene":
            return tf / (tf + norm)
        return tf * (self.k1 + 1) / (tf + norm)
