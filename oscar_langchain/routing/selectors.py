"""Selectors: rank the routes that passed the filters, best first.

A selector's ``rank(candidates, request)`` returns ``[(candidate, score), ...]`` in
the order to try them; the order is also the failover order. Every selector is
O(N) in Python plus one C-level sort. Ties keep the routes' declared order.

Example:
    >>> from oscar_langchain.routing.candidate import Request, resolve
    >>> from oscar_langchain.routing.route import Route
    >>> cands = [resolve(Route(name=n, runnable=None, input_price=p, quality=q))
    ...          for n, p, q in [("big", 5.0, 0.9), ("small", 0.1, 0.4)]]
    >>> [c.name for c, _ in Cheapest().rank(cands, Request(input_tokens=1000))]
    ['small', 'big']
    >>> [c.name for c, _ in BestQuality().rank(cands, Request(input_tokens=1000))]
    ['big', 'small']
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.routing.candidate import Candidate, Request

__all__ = [
    "BestQuality",
    "Cheapest",
    "LeastInFlight",
    "LowestLatency",
    "QualityFloor",
    "Ranking",
    "RoundRobin",
    "Selector",
    "UsageBased",
    "WeightedRandom",
]

Ranking = list[tuple[Candidate, float]]


class Selector(Protocol):
    """Anything with ``rank(candidates, request) -> [(candidate, score), ...]``."""

    def rank(self, candidates: Sequence[Candidate], request: Request) -> Ranking:
        """Order ``candidates`` best first, each with the score it was ranked by."""


def _ranked(candidates: Sequence[Candidate], scores: list[float], *, descending: bool) -> Ranking:
    pairs = list(zip(candidates, scores, strict=True))
    pairs.sort(key=lambda p: p[1], reverse=descending)  # stable: ties keep route order
    return pairs


@dataclass(frozen=True)
class Cheapest:
    """Lowest estimated cost of this request first (score: USD)."""

    def rank(self, candidates: Sequence[Candidate], request: Request) -> Ranking:
        """Order by estimated cost, ascending."""
        return _ranked(
            candidates, [c.estimated_cost(request) for c in candidates], descending=False
        )


@dataclass(frozen=True)
class BestQuality:
    """Highest route quality first (score: quality)."""

    def rank(self, candidates: Sequence[Candidate], request: Request) -> Ranking:
        """Order by quality, descending."""
        return _ranked(candidates, [c.quality for c in candidates], descending=True)


def linear_floor(low: float = 0.3, high: float = 0.9) -> Callable[[float], float]:
    """Quality floor rising linearly from ``low`` (complexity 0) to ``high`` (complexity 1)."""

    def floor(complexity: float) -> float:
        return low + (high - low) * complexity

    return floor


@dataclass(frozen=True)
class QualityFloor:
    """Cheapest route whose quality meets a floor that rises with the input's complexity.

    Routes under the floor follow, best quality first (they are the failover tail).
    Score: USD cost for routes meeting the floor, ``-quality`` for the others.

    Attributes:
        floor: ``floor(complexity) -> minimum quality``; default 0.3 + 0.6 * complexity.
    """

    floor: Callable[[float], float] = field(default_factory=linear_floor)

    def rank(self, candidates: Sequence[Candidate], request: Request) -> Ranking:
        """Order: routes meeting the floor by cost, then the rest by quality."""
        minimum = self.floor(request.complexity)
        keyed = []
        for c in candidates:
            if c.quality >= minimum:
                keyed.append((0, c.estimated_cost(request), c))
            else:
                keyed.append((1, -c.quality, c))
        keyed.sort(key=lambda k: (k[0], k[1]))
        return [(c, score) for _, score, c in keyed]


class RoundRobin:
    """Take turns: each request starts one route further along (thread-safe counter)."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def rank(self, candidates: Sequence[Candidate], request: Request) -> Ranking:
        """Rotate ``candidates`` by the request number (score: position)."""
        n = len(candidates)
        if n == 0:
            return []
        with self._lock:
            start = next(self._counter) % n
        order = list(candidates[start:]) + list(candidates[:start])
        return [(c, float(i)) for i, c in enumerate(order)]


class WeightedRandom:
    """Random order with chance proportional to ``Route.weight`` (Efraimidis-Spirakis).

    Args:
        rng: the random source (seed it for reproducible tests).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._lock = threading.Lock()

    def rank(self, candidates: Sequence[Candidate], request: Request) -> Ranking:
        """Draw a weighted permutation (score: the sampling key, higher first)."""
        with self._lock:
            draws = [self.rng.random() for _ in candidates]
        keys = [u ** (1.0 / c.route.weight) for u, c in zip(draws, candidates, strict=True)]
        return _ranked(candidates, keys, descending=True)


@dataclass(frozen=True)
class LeastInFlight:
    """Fewest running calls first (score: in-flight count; needs a limit store's usage)."""

    def rank(self, candidates: Sequence[Candidate], request: Request) -> Ranking:
        """Order by in-flight calls, ascending."""
        usage = request.usage_of
        return _ranked(
            candidates, [float(usage(c.name).in_flight) for c in candidates], descending=False
        )


LatencyMetric = Literal["latency", "per_token", "ttft"]


@dataclass(frozen=True)
class LowestLatency:
    """Lowest latency EWMA first; routes never measured come first (to measure them).

    Attributes:
        metric: ``latency`` (whole call), ``per_token`` (seconds per output token) or
            ``ttft`` (time to first streamed chunk).
    """

    metric: LatencyMetric = "latency"

    def __post_init__(self) -> None:
        if self.metric not in ("latency", "per_token", "ttft"):
            raise ConfigurationError(
                "LowestLatency.metric", f"must be latency, per_token or ttft, got {self.metric!r}"
            )

    def rank(self, candidates: Sequence[Candidate], request: Request) -> Ranking:
        """Order by the EWMA, ascending (unmeasured: score -1)."""
        metric = self.metric
        scores = []
        for c in candidates:
            value = getattr(c.stats, metric)
            scores.append(-1.0 if value is None else value)
        return _ranked(candidates, scores, descending=False)


@dataclass(frozen=True)
class UsageBased:
    """Least-used route first: the largest used share of its rpm/tpm limits.

    Routes without limits score by raw tokens used in the window relative to the
    busiest route, so load still spreads.
    """

    def rank(self, candidates: Sequence[Candidate], request: Request) -> Ranking:
        """Order by used share of limits, ascending."""
        usage = request.usage_of
        scores = []
        for c in candidates:
            u = usage(c.name)
            r = c.route
            share = 0.0
            if r.tpm is not None:
                share = u.tokens / r.tpm
            if r.rpm is not None:
                share = max(share, u.requests / r.rpm)
            if r.tpm is None and r.rpm is None:
                share = u.tokens * 1e-9
            scores.append(share)
        return _ranked(candidates, scores, descending=False)
