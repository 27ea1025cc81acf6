"""What policies and selectors look at: a resolved route and the request's facts.

A :class:`Candidate` is a :class:`~oscar_langchain.routing.route.Route` whose context
window, prices and capabilities are resolved once (route values over the model
registry's), plus live :class:`RouteStats` (latency EWMAs, outcomes). A
:class:`Request` holds what the router learned about one input: token counts, required
capabilities and tags, complexity, current usage and which breakers are open.

Example:
    >>> from oscar_langchain.routing.route import Route
    >>> c = resolve(Route(name="a", runnable=None, input_price=1.0, output_price=2.0))
    >>> c.estimated_cost(Request(input_tokens=1_000_000, output_tokens=500_000))
    2.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from oscar_langchain.routing.limits import Usage
from oscar_langchain.routing.route import Route

__all__ = ["Candidate", "ModelLookup", "Request", "RouteStats", "resolve"]

NO_USAGE = Usage()


class ModelLookup(Protocol):
    """What the router needs of ``oscar_langchain.models.ModelRegistry``."""

    def get(self, name: str, default: Any = ...) -> Any:
        """The registry's ``ModelInfo`` for ``name`` (or ``default``)."""


@dataclass(slots=True)
class RouteStats:
    """Live, per-process measurements of one route (exponentially weighted).

    Attributes:
        alpha: EWMA smoothing factor in (0, 1]; larger reacts faster.
        latency: EWMA of whole-call seconds (``None`` until the first success).
        per_token: EWMA of seconds per output token.
        ttft: EWMA of seconds to the first streamed chunk.
        successes: calls that returned.
        failures: calls that raised.
    """

    alpha: float = 0.3
    latency: float | None = None
    per_token: float | None = None
    ttft: float | None = None
    successes: int = 0
    failures: int = 0

    def _ewma(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.alpha * (new - old)

    def observe(
        self, seconds: float, *, output_tokens: int | None = None, ttft: float | None = None
    ) -> None:
        """Record a successful call of ``seconds`` (and its output size / first-chunk time)."""
        self.successes += 1
        self.latency = self._ewma(self.latency, seconds)
        if output_tokens:
            self.per_token = self._ewma(self.per_token, seconds / output_tokens)
        if ttft is not None:
            self.ttft = self._ewma(self.ttft, ttft)

    def observe_failure(self) -> None:
        """Record a failed call."""
        self.failures += 1


@dataclass(frozen=True, slots=True)
class Request:
    """Facts about one input that policies and selectors decide on.

    Attributes:
        input_tokens: tokens of the prompt.
        output_tokens: output tokens requested (``max_tokens``).
        capabilities: capabilities the request needs.
        tags: route tags the request asks for (a route must carry all of them).
        complexity: input complexity in [0, 1] (0 = trivial).
        text: the prompt text (for selectors that look at it; may be empty).
        usage: current limit usage by route name.
        open_breakers: names of routes whose circuit breaker rejects calls now.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    capabilities: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    complexity: float = 0.0
    text: str = ""
    usage: Mapping[str, Usage] = field(default_factory=dict)
    open_breakers: frozenset[str] = frozenset()

    def usage_of(self, name: str) -> Usage:
        """Usage of route ``name`` (zeros when unknown)."""
        return self.usage.get(name, NO_USAGE)


@dataclass(slots=True, eq=False)
class Candidate:
    """A route with its resolved traits and live stats."""

    route: Route
    context_window: int | None
    max_output_tokens: int | None
    input_price: float
    output_price: float
    capabilities: frozenset[str]
    quality: float = 0.5
    stats: RouteStats = field(default_factory=RouteStats)

    @property
    def name(self) -> str:
        """The route's name."""
        return self.route.name

    def estimated_cost(self, request: Request) -> float:
        """USD cost of ``request`` on this route (prices are per 1M tokens)."""
        return (
            request.input_tokens * self.input_price + request.output_tokens * self.output_price
        ) / 1_000_000


def resolve(
    route: Route, registry: ModelLookup | None = None, *, stats: RouteStats | None = None
) -> Candidate:
    """Fill a route's traits from the registry (route values win)."""
    info: Any = None
    if route.model is not None and registry is not None:
        info = registry.get(route.model, None)

    def pick(own: Any, attr: str, default: Any) -> Any:
        if own is not None:
            return own
        value = getattr(info, attr, None) if info is not None else None
        return default if value is None else value

    caps = frozenset(route.capabilities) | frozenset(
        getattr(info, "capabilities", frozenset()) or frozenset()
    )
    window = pick(route.context_window, "context_window", None)
    return Candidate(
        route=route,
        context_window=int(window) if window is not None else None,
        max_output_tokens=pick(route.max_output_tokens, "max_output_tokens", None),
        input_price=float(pick(route.input_price, "input_price", 0.0)),
        output_price=float(pick(route.output_price, "output_price", 0.0)),
        capabilities=caps,
        quality=float(pick(route.quality, "quality", 0.5)),
        stats=stats if stats is not None else RouteStats(),
    )


BreakerProbe = Callable[[str], bool]
"""``probe(route_name) -> True`` when the route's breaker rejects calls now."""
