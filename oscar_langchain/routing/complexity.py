"""Complexity scorers: how hard an input is, in [0, 1], to pick a strong or cheap route.

:class:`HeuristicComplexity` is instant and needs no data. Its features, each in
[0, 1] and weighted (weights sum to 1, all adjustable and saved as JSON):

* ``length`` - word count, log-scaled (400 words or more scores 1);
* ``questions`` - several questions in one input (4 or more scores 1);
* ``code`` - code fences, ``def``/``class``/``import``/``function``, braces, tracebacks;
* ``math`` - equations, LaTeX, operators between numbers, math vocabulary;
* ``multi_step`` - "step by step", "first ... then", numbered or bulleted steps;
* ``reasoning`` - why/explain/compare/analyse/prove/design/trade-off cues.

:class:`LearnedComplexity` is trained with scikit-learn on ``(text, label)`` pairs,
``label = 1`` meaning *the cheap route's answer was not good enough*. Its threshold is
calibrated so a chosen share of inputs goes to the strong route (as RouteLLM does)
and the score is remapped so that the threshold sits at 0.5. Both save and load as
JSON (no pickle).

Example:
    >>> h = HeuristicComplexity()
    >>> h("hi") < 0.1 < h("Explain step by step why the integral of x^2 from 0 to 3 is 9.")
    True
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oscar_langchain.errors import ConfigurationError

__all__ = ["HeuristicComplexity", "LearnedComplexity", "calibrate_threshold"]

_CODE = re.compile(
    r"```|\bdef \w+\(|\bclass \w+[:(]|\bimport \w+|\bfunction\b|=>|\{\s*$|;\s*$|Traceback|"
    r"\bSELECT\b.+\bFROM\b|</?\w+>",
    re.MULTILINE,
)
_MATH = re.compile(
    r"\d\s*[-+*/^=<>]\s*\d|\\(?:frac|sum|int|sqrt)|\$[^$]+\$|\b(?:integral|derivative|"
    r"equation|theorem|prove|probability|matrix|eigen\w*|polynomial|limit|solve)\b",
    re.IGNORECASE,
)
_STEPS = re.compile(
    r"step[- ]by[- ]step|\bfirst\b.*\bthen\b|\bafterwards\b|\bfinally\b|^\s*(?:\d+[.)]|[-*])\s",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)
_REASONING = re.compile(
    r"\b(?:why|explain|compare|contrast|analy[sz]e|evaluate|justify|prove|design|"
    r"trade-?offs?|pros and cons|implications?|derive|critique|reason)\b",
    re.IGNORECASE,
)

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "length": 0.25,
    "questions": 0.10,
    "code": 0.20,
    "math": 0.15,
    "multi_step": 0.15,
    "reasoning": 0.15,
}


def _count_score(count: int, full: int) -> float:
    return min(1.0, count / full)


@dataclass(frozen=True)
class HeuristicComplexity:
    """A fast, explainable complexity score in [0, 1] (see the module docstring).

    Attributes:
        weights: weight of each feature (non-negative; normalised to sum 1).
        full_length: words at which the length feature reaches 1.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    full_length: int = 400

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ConfigurationError(
                "HeuristicComplexity.weights", f"unknown features {sorted(unknown)}"
            )
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ConfigurationError(
                "HeuristicComplexity.weights", "must be non-negative with a positive sum"
            )
        if self.full_length < 1:
            raise ConfigurationError("HeuristicComplexity.full_length", "must be >= 1")

    def features(self, text: str) -> dict[str, float]:
        """Each feature's value in [0, 1] for ``text``."""
        words = len(text.split())
        return {
            "length": min(1.0, math.log1p(words) / math.log1p(self.full_length)),
            "questions": _count_score(max(0, text.count("?") - 1), 3),
            "code": _count_score(len(_CODE.findall(text)), 3),
            "math": _count_score(len(_MATH.findall(text)), 3),
            "multi_step": _count_score(len(_STEPS.findall(text)), 2),
            "reasoning": _count_score(len(_REASONING.findall(text)), 2),
        }

    def __call__(self, text: str) -> float:
        """Complexity of ``text`` in [0, 1]."""
        total = sum(self.weights.values())
        feats = self.features(text)
        return min(1.0, sum(w * feats[k] for k, w in self.weights.items()) / total)

    def to_json(self) -> str:
        """Serialise the weights as JSON."""
        return json.dumps(
            {"kind": "heuristic", "weights": dict(self.weights), "full_length": self.full_length}
        )

    @classmethod
    def from_json(cls, text: str) -> HeuristicComplexity:
        """Rebuild from :meth:`to_json` output."""
        data = json.loads(text)
        if data.get("kind") != "heuristic":
            raise ConfigurationError("kind", "not a heuristic complexity scorer")
        return cls(weights=data["weights"], full_length=int(data["full_length"]))


def calibrate_threshold(scores: Sequence[float], strong_share: float) -> float:
    """Threshold such that ``strong_share`` of ``scores`` lie at or above it."""
    if not 0.0 <= strong_share <= 1.0:
        raise ConfigurationError("strong_share", f"must be in [0, 1], got {strong_share!r}")
    if not scores:
        raise ConfigurationError("scores", "need at least one score to calibrate")
    if strong_share == 0.0:
        return math.nextafter(max(scores), math.inf)
    ordered = sorted(scores, reverse=True)
    k = max(1, round(strong_share * len(ordered)))
    return float(ordered[k - 1])


class LearnedComplexity:
    """Logistic regression on TF-IDF word n-grams; label 1 = needs the strong route.

    Build it with :meth:`fit`; the fitted parameters are kept as plain arrays so
    :meth:`save`/:meth:`load` are JSON only.

    Example:
        >>> texts = ["hi", "thanks", "prove the theorem", "derive the integral"] * 3
        >>> m = LearnedComplexity.fit(texts, [0, 0, 1, 1] * 3)
        >>> m.needs_strong("derive and prove"), m.needs_strong("hi")
        (True, False)
    """

    def __init__(
        self,
        vocabulary: Mapping[str, int],
        idf: Sequence[float],
        coef: Sequence[float],
        intercept: float,
        *,
        threshold: float = 0.5,
        ngram_range: tuple[int, int] = (1, 2),
    ) -> None:
        if len(idf) != len(vocabulary) or len(coef) != len(vocabulary):
            raise ConfigurationError("vocabulary", "idf, coef and vocabulary sizes differ")
        if not 0.0 < threshold < 1.0:
            raise ConfigurationError("threshold", f"must be in (0, 1), got {threshold!r}")
        from sklearn.feature_extraction.text import CountVectorizer

        self.vocabulary = dict(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        self.threshold = float(threshold)
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self._counts = CountVectorizer(vocabulary=self.vocabulary, ngram_range=self.ngram_range)

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        labels: Sequence[int],
        *,
        ngram_range: tuple[int, int] = (1, 2),
        regularization: float = 1.0,
        max_features: int = 20_000,
    ) -> LearnedComplexity:
        """Train on ``texts`` and binary ``labels`` (1 = the cheap answer was not good enough)."""
        if len(texts) != len(labels) or not texts:
            raise ConfigurationError("labels", "need as many labels as texts, at least one")
        if len(set(labels)) != 2:
            raise ConfigurationError("labels", "need both labels 0 and 1")
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vec = TfidfVectorizer(ngram_range=ngram_range, sublinear_tf=True, max_features=max_features)
        x = vec.fit_transform(texts)
        clf = LogisticRegression(C=regularization, max_iter=1000).fit(x, list(labels))
        vocab = {str(k): int(v) for k, v in vec.vocabulary_.items()}
        return cls(
            vocab, vec.idf_.tolist(), clf.coef_[0].tolist(), float(clf.intercept_[0]),
            ngram_range=ngram_range,
        )  # fmt: skip

    def probability(self, texts: Sequence[str]) -> np.ndarray:
        """P(needs strong) for each text."""
        counts = self._counts.transform(list(texts)).astype(np.float64)
        counts.data = 1.0 + np.log(counts.data)  # sublinear tf, as in training
        x = counts.multiply(self.idf).tocsr()
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        logits = np.asarray(x @ self.coef).ravel() / norms + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-logits)))

    def calibrate(self, texts: Sequence[str], strong_share: float) -> float:
        """Set the threshold so ``strong_share`` of ``texts`` need the strong route."""
        probs = self.probability(texts).tolist()
        threshold = calibrate_threshold(probs, strong_share)
        self.threshold = min(max(threshold, 1e-9), 1 - 1e-9)
        return self.threshold

    def needs_strong(self, text: str) -> bool:
        """Whether ``text`` scores at or above the threshold."""
        return bool(self.probability([text])[0] >= self.threshold)

    def __call__(self, text: str) -> float:
        """Complexity in [0, 1] with the calibrated threshold mapped to 0.5."""
        p = float(self.probability([text])[0])
        t = self.threshold
        return 0.5 * p / t if p < t else 0.5 + 0.5 * (p - t) / (1.0 - t)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form of the fitted model."""
        return {
            "kind": "learned",
            "vocabulary": self.vocabulary,
            "idf": self.idf.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "threshold": self.threshold,
            "ngram_range": list(self.ngram_range),
        }

    def save(self, path: str | Path) -> None:
        """Write the model as JSON."""
        Path(path).write_text(json.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> LearnedComplexity:
        """Read a model written by :meth:`save`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("kind") != "learned":
            raise ConfigurationError("kind", f"{path} is not a learned complexity model")
        lo, hi = data["ngram_range"]
        return cls(
            data["vocabulary"], data["idf"], data["coef"], data["intercept"],
            threshold=data["threshold"], ngram_range=(int(lo), int(hi)),
        )  # fmt: skip
