"""Learning from feedback: Thompson sampling per route and complexity band.

For each (route, complexity band) the selector keeps a Beta posterior of the chance
that the route's answer is good enough. Per request it draws one sample per route;
routes whose sample meets ``quality_target`` are ranked cheapest first, the rest
follow by sampled quality. So it spends on strong routes only where cheap ones fall
short of the target, and keeps exploring in proportion to its uncertainty.

Feedback is a score in [0, 1] (1 = good enough), given as
``RouterRunnable.feedback(run_id, score)`` or :meth:`ThompsonSelector.update`.

Example:
    >>> import random
    >>> from oscar_langchain.routing.candidate import Request, resolve
    >>> from oscar_langchain.routing.route import Route
    >>> cands = [resolve(Route(name="cheap", runnable=None, input_price=0.1)),
    ...          resolve(Route(name="strong", runnable=None, input_price=5.0))]
    >>> sel = ThompsonSelector(quality_target=0.8, rng=random.Random(0))
    >>> for _ in range(50):
    ...     sel.update("cheap", 0.1, 1.0)
    >>> sel.rank(cands, Request(input_tokens=100, complexity=0.1))[0][0].name
    'cheap'
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.routing.candidate import Candidate, Request
from oscar_langchain.routing.selectors import Ranking

__all__ = ["ThompsonSelector"]


class ThompsonSelector:
    """Thompson sampling over routes, per complexity band, toward a quality target.

    Args:
        quality_target: the success chance a route must (plausibly) reach to be used.
        bands: number of equal-width complexity bands in [0, 1].
        prior_strength: pseudo-observations of the prior, centred on ``Route.quality``
            (0: uniform Beta(1, 1)).
        rng: random source (seed it for reproducible runs).
    """

    def __init__(
        self,
        *,
        quality_target: float = 0.8,
        bands: int = 3,
        prior_strength: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 < quality_target <= 1.0:
            raise ConfigurationError(
                "ThompsonSelector.quality_target", f"must be in (0, 1], got {quality_target!r}"
            )
        if bands < 1:
            raise ConfigurationError("ThompsonSelector.bands", f"must be >= 1, got {bands!r}")
        if prior_strength < 0:
            raise ConfigurationError("ThompsonSelector.prior_strength", "must be >= 0")
        self.quality_target = quality_target
        self.bands = bands
        self.prior_strength = prior_strength
        self.rng = rng or random.Random()
        self._posterior: dict[tuple[str, int], list[float]] = {}
        self._priors: dict[str, float] = {}
        self._lock = threading.Lock()

    def band(self, complexity: float) -> int:
        """Index of the band holding ``complexity``."""
        return min(self.bands - 1, max(0, int(complexity * self.bands)))

    def _ab(self, name: str, band: int) -> list[float]:
        key = (name, band)
        ab = self._posterior.get(key)
        if ab is None:
            q = self._priors.get(name, 0.5)
            ab = self._posterior[key] = [
                1.0 + q * self.prior_strength,
                1.0 + (1.0 - q) * self.prior_strength,
            ]
        return ab

    def rank(self, candidates: Sequence[Candidate], request: Request) -> Ranking:
        """Draw a quality sample per route; cheapest meeting the target first."""
        band = self.band(request.complexity)
        with self._lock:
            samples = []
            for c in candidates:
                self._priors.setdefault(c.name, c.quality)
                a, b = self._ab(c.name, band)
                samples.append(self.rng.betavariate(a, b))
        target = self.quality_target
        keyed = [
            ((0, c.estimated_cost(request)) if s >= target else (1, -s), s, c)
            for s, c in zip(samples, candidates, strict=True)
        ]
        keyed.sort(key=lambda k: k[0])
        return [(c, s) for _, s, c in keyed]

    def update(self, route: str, complexity: float, score: float) -> None:
        """Record quality ``score`` in [0, 1] of ``route`` on an input of ``complexity``."""
        if not 0.0 <= score <= 1.0:
            raise ConfigurationError("score", f"must be in [0, 1], got {score!r}")
        with self._lock:
            ab = self._ab(route, self.band(complexity))
            ab[0] += score
            ab[1] += 1.0 - score

    def estimates(self) -> dict[str, dict[int, float]]:
        """Posterior mean success chance per route and band."""
        with self._lock:
            out: dict[str, dict[int, float]] = {}
            for (name, band), (a, b) in self._posterior.items():
                out.setdefault(name, {})[band] = a / (a + b)
            return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-data state (JSON-safe) to persist what was learned."""
        with self._lock:
            return {
                "quality_target": self.quality_target,
                "bands": self.bands,
                "posterior": [[n, b, ab[0], ab[1]] for (n, b), ab in self._posterior.items()],
            }

    def load_dict(self, data: Mapping[str, Any]) -> None:
        """Restore the posteriors saved by :meth:`to_dict` (same band count)."""
        if int(data["bands"]) != self.bands:
            raise ConfigurationError("bands", "saved state has a different band count")
        with self._lock:
            for name, band, a, b in data["posterior"]:
                self._posterior[(str(name), int(band))] = [float(a), float(b)]
