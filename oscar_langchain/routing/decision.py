"""The record of one routing decision: what was chosen, how the rest ranked, who was out.

Example:
    >>> d = RouteDecision(chosen="small", ranking=(("small", 0.001), ("big", 0.02)),
    ...                   rejected=(("tiny", "context window: 9000 in + 512 out > 4096"),))
    >>> d.to_dict()["rejected"]
    {'tiny': 'context window: 9000 in + 512 out > 4096'}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RouteDecision"]


@dataclass(frozen=True)
class RouteDecision:
    """One request's routing, for traces, ``response_metadata`` and debugging.

    Attributes:
        chosen: route that served the request (the first ranked before any call).
        ranking: ``(route, score)`` in the order tried; the failover order.
        rejected: ``(route, reason)`` for every route the filters removed.
        selector: name of the selector that ranked.
        complexity: input complexity in [0, 1].
        input_tokens: counted prompt tokens.
        output_tokens: requested output tokens.
        attempts: ``(route, outcome)`` of each call made (``"ok"`` or the error kind).
    """

    chosen: str | None
    ranking: tuple[tuple[str, float], ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()
    selector: str = ""
    complexity: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    attempts: tuple[tuple[str, str], ...] = ()

    def served_by(self, name: str, attempts: tuple[tuple[str, str], ...]) -> RouteDecision:
        """This decision once route ``name`` answered after ``attempts``."""
        return RouteDecision(
            name,
            self.ranking,
            self.rejected,
            self.selector,
            self.complexity,
            self.input_tokens,
            self.output_tokens,
            attempts,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe form."""
        return {
            "chosen": self.chosen,
            "ranking": [[name, round(score, 9)] for name, score in self.ranking],
            "rejected": dict(self.rejected),
            "selector": self.selector,
            "complexity": round(self.complexity, 4),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "attempts": [list(a) for a in self.attempts],
        }

    def attributes(self) -> dict[str, Any]:
        """Flat attributes for the tracer (``oscar.route`` ...)."""
        return {
            "oscar.route": self.chosen or "",
            "oscar.route.ranking": ",".join(name for name, _ in self.ranking),
            "oscar.route.rejected": ";".join(f"{n}: {r}" for n, r in self.rejected),
            "oscar.route.selector": self.selector,
            "oscar.route.complexity": round(self.complexity, 4),
            "oscar.route.input_tokens": self.input_tokens,
            "oscar.route.attempts": len(self.attempts),
        }
