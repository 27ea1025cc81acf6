"""The router's pure core: resolve routes once, then filter and rank each request in O(N).

No LangChain here: :class:`RoutingEngine` takes a :class:`Request` and returns the
ranked candidates and a :class:`RouteDecision`; the Runnable shell in ``router.py``
counts tokens, calls the routes and records outcomes.

Example:
    >>> from oscar_langchain.routing.route import Route
    >>> from oscar_langchain.routing.selectors import Cheapest
    >>> engine = RoutingEngine(
    ...     [Route(name="small", runnable=None, context_window=4096, input_price=0.1),
    ...      Route(name="large", runnable=None, context_window=128_000, input_price=2.5)],
    ...     selector=Cheapest())
    >>> decision, ranking = engine.decide(engine.request(input_tokens=9000, output_tokens=512))
    >>> decision.chosen, decision.rejected
    ('large', (('small', 'context window: 9000 in + 512 out > 4096'),))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.routing.candidate import Candidate, ModelLookup, Request, resolve
from oscar_langchain.routing.decision import RouteDecision
from oscar_langchain.routing.limits import LimitStore, MemoryLimitStore
from oscar_langchain.routing.policies import DEFAULT_POLICIES, PolicyLike, combine
from oscar_langchain.routing.route import Route
from oscar_langchain.routing.selectors import QualityFloor, Ranking, Selector

__all__ = ["RoutingEngine"]


class RoutingEngine:
    """Filter routes with policies, rank survivors with a selector.

    Args:
        routes: the routes (names must be unique).
        selector: ranks the routes that pass (default :class:`QualityFloor`).
        policies: filters, applied in order (default ``DEFAULT_POLICIES``).
        registry: model registry used to fill context windows, prices, capabilities.
        limits: limit store (default: a :class:`MemoryLimitStore`).
    """

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        selector: Selector | None = None,
        policies: Iterable[PolicyLike] = DEFAULT_POLICIES,
        registry: ModelLookup | None = None,
        limits: LimitStore | None = None,
    ) -> None:
        if not routes:
            raise ConfigurationError("routes", "need at least one route")
        names = [r.name for r in routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigurationError("routes", f"duplicate route names {dupes}")
        self.routes = tuple(routes)
        self.selector: Selector = selector if selector is not None else QualityFloor()
        self.policies = combine(policies)
        # a policy's optional ``active(request)`` says whether it can reject anything
        self._gates = [(p, getattr(p, "active", None)) for p in self.policies]
        self.limits: LimitStore = limits if limits is not None else MemoryLimitStore()
        self.candidates = [resolve(r, registry) for r in self.routes]
        self.by_name = {c.name: c for c in self.candidates}
        self._limited = [r.name for r in self.routes if r.has_limits]
        self._selector_name = type(self.selector).__name__

    def request(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        capabilities: Iterable[str] = (),
        tags: Iterable[str] = (),
        complexity: float = 0.0,
        text: str = "",
        open_breakers: Iterable[str] = (),
    ) -> Request:
        """Build a :class:`Request`, reading current usage of routes that have limits."""
        return Request(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            capabilities=frozenset(capabilities),
            tags=frozenset(tags),
            complexity=complexity,
            text=text,
            usage=self.limits.usage(self._limited) if self._limited else {},
            open_breakers=frozenset(open_breakers),
        )

    def decide(self, request: Request) -> tuple[RouteDecision, Ranking]:
        """Filter and rank; the decision's ``chosen`` is the first ranked (or ``None``)."""
        passed: list[Candidate] = []
        rejected: list[tuple[str, str]] = []
        policies = [p for p, active in self._gates if active is None or active(request)]
        for cand in self.candidates:
            for policy in policies:
                reason = policy(cand, request)
                if reason is not None:
                    rejected.append((cand.name, reason))
                    break
            else:
                passed.append(cand)
        ranking = self.selector.rank(passed, request) if passed else []
        decision = RouteDecision(
            chosen=ranking[0][0].name if ranking else None,
            ranking=tuple((c.name, float(s)) for c, s in ranking),
            rejected=tuple(rejected),
            selector=self._selector_name,
            complexity=request.complexity,
            input_tokens=request.input_tokens,
            output_tokens=request.output_tokens,
        )
        return decision, ranking

    def status(self, breaker_states: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every route's traits, limits, usage and measurements as plain data."""
        usage = self.limits.usage([c.name for c in self.candidates])
        states = breaker_states or {}
        rows = []
        for c in self.candidates:
            r, u, s = c.route, usage[c.name], c.stats
            rows.append(
                {
                    "route": c.name,
                    "model": r.model,
                    "quality": c.quality,
                    "context_window": c.context_window,
                    "input_price": c.input_price,
                    "output_price": c.output_price,
                    "breaker": states.get(c.name, "n/a"),
                    "in_flight": u.in_flight,
                    "max_in_flight": r.max_in_flight,
                    "requests": u.requests,
                    "rpm": r.rpm,
                    "tokens": u.tokens,
                    "tpm": r.tpm,
                    "spent": u.spent,
                    "budget": r.budget,
                    "budget_left": None if r.budget is None else max(0.0, r.budget - u.spent),
                    "latency": s.latency,
                    "ttft": s.ttft,
                    "per_token": s.per_token,
                    "successes": s.successes,
                    "failures": s.failures,
                    "limits": self.limits.describe(),
                }
            )
        return rows
