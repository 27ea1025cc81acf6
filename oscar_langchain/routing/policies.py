"""Filter policies: small frozen objects that accept or reject a route for a request.

A policy is called as ``policy(candidate, request)`` and returns ``None`` to accept or
a short reason to reject (a plain callable may also return ``True``/``False``).
Policies combine tenacity-style: ``a & b`` rejects with the first rejection, ``a | b``
accepts when either accepts.

Example:
    >>> from oscar_langchain.routing.candidate import Request, resolve
    >>> from oscar_langchain.routing.route import Route
    >>> small = resolve(Route(name="small", runnable=None, context_window=4096))
    >>> policy = FitsContext() & HasCapabilities()
    >>> policy(small, Request(input_tokens=4000, output_tokens=512))
    'context window: 4000 in + 512 out > 4096'
    >>> policy(small, Request(input_tokens=100, output_tokens=512)) is None
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from oscar_langchain.routing.candidate import Candidate, Request
from oscar_langchain.routing.limits import limit_reason

__all__ = [
    "DEFAULT_POLICIES",
    "AllOf",
    "AnyOf",
    "BreakerClosed",
    "FitsContext",
    "HasCapabilities",
    "HasTags",
    "MaxCost",
    "MinQuality",
    "Policy",
    "PolicyLike",
    "WithinLimits",
    "as_policy",
]

PolicyLike = Callable[[Candidate, Request], "str | bool | None"]
"""A policy object or any ``f(candidate, request) -> reason | None | bool``."""


class Policy:
    """Base of the built-in policies: adds ``&`` and ``|``."""

    def __call__(self, candidate: Candidate, request: Request) -> str | None:
        """The reason to reject ``candidate`` for ``request``, or ``None``."""
        raise NotImplementedError

    def active(self, request: Request) -> bool:
        """Whether this policy can reject anything for ``request`` (skipped if not)."""
        return True

    def __and__(self, other: PolicyLike) -> AllOf:
        return AllOf((self, as_policy(other)))

    def __rand__(self, other: PolicyLike) -> AllOf:
        return AllOf((as_policy(other), self))

    def __or__(self, other: PolicyLike) -> AnyOf:
        return AnyOf((self, as_policy(other)))

    def __ror__(self, other: PolicyLike) -> AnyOf:
        return AnyOf((as_policy(other), self))


@dataclass(frozen=True)
class _Callable(Policy):
    func: PolicyLike

    def __call__(self, candidate: Candidate, request: Request) -> str | None:
        """The reason to reject ``candidate`` for ``request``, or ``None``."""
        verdict = self.func(candidate, request)
        if verdict is None or verdict is True:
            return None
        if verdict is False:
            return f"rejected by {getattr(self.func, '__name__', type(self.func).__name__)}"
        return str(verdict)


def as_policy(policy: PolicyLike) -> Policy:
    """Wrap a plain callable (returning a reason, ``None`` or a bool) as a :class:`Policy`."""
    return policy if isinstance(policy, Policy) else _Callable(policy)


@dataclass(frozen=True)
class AllOf(Policy):
    """Accept when every policy accepts; the reason is the first rejection."""

    policies: tuple[Policy, ...]

    def __call__(self, candidate: Candidate, request: Request) -> str | None:
        """The reason to reject ``candidate`` for ``request``, or ``None``."""
        for policy in self.policies:
            reason = policy(candidate, request)
            if reason is not None:
                return reason
        return None


@dataclass(frozen=True)
class AnyOf(Policy):
    """Accept when any policy accepts; the reason joins every rejection."""

    policies: tuple[Policy, ...]

    def __call__(self, candidate: Candidate, request: Request) -> str | None:
        """The reason to reject ``candidate`` for ``request``, or ``None``."""
        reasons = []
        for policy in self.policies:
            reason = policy(candidate, request)
            if reason is None:
                return None
            reasons.append(reason)
        return " and ".join(reasons)


@dataclass(frozen=True)
class FitsContext(Policy):
    """Input tokens plus requested output must fit the context window (and output cap).

    Attributes:
        margin: tokens kept free for chat-template overhead.
    """

    margin: int = 0

    def __call__(self, candidate: Candidate, request: Request) -> str | None:
        """The reason to reject ``candidate`` for ``request``, or ``None``."""
        cap = candidate.max_output_tokens
        if cap is not None and request.output_tokens > cap:
            return f"max output tokens: {request.output_tokens} requested > {cap}"
        window = candidate.context_window
        if window is None:
            return None
        need = request.input_tokens + request.output_tokens + self.margin
        if need > window:
            margin = f" + {self.margin} margin" if self.margin else ""
            return (
                f"context window: {request.input_tokens} in + {request.output_tokens} out"
                f"{margin} > {window}"
            )
        return None


@dataclass(frozen=True)
class HasCapabilities(Policy):
    """The route must have every capability the request needs."""

    def active(self, request: Request) -> bool:
        """Skipped unless the request needs capabilities."""
        return bool(request.capabilities)

    def __call__(self, candidate: Candidate, request: Request) -> str | None:
        """The reason to reject ``candidate`` for ``request``, or ``None``."""
        if request.capabilities <= candidate.capabilities:
            return None
        return "missing capabilities: " + ", ".join(
            sorted(request.capabilities - candidate.capabilities)
        )


@dataclass(frozen=True)
class HasTags(Policy):
    """The route must carry every tag the request asks for."""

    def active(self, request: Request) -> bool:
        """Skipped unless the request asks for tags."""
        return bool(request.tags)

    def __call__(self, candidate: Candidate, request: Request) -> str | None:
        """The reason to reject ``candidate`` for ``request``, or ``None``."""
        if request.tags <= candidate.route.tags:
            return None
        return "missing tags: " + ", ".join(sorted(request.tags - candidate.route.tags))


@dataclass(frozen=True)
class BreakerClosed(Policy):
    """The route's circuit breaker must allow calls."""

    def active(self, request: Request) -> bool:
        """Skipped unless some breaker is open."""
        return bool(request.open_breakers)

    def __call__(self, candidate: Candidate, request: Request) -> str | None:
        """The reason to reject ``candidate`` for ``request``, or ``None``."""
        return "circuit open" if candidate.name in request.open_breakers else None


@dataclass(frozen=True)
class WithinLimits(Policy):
    """In-flight, rpm, tpm and budget must leave room for this request."""

    def active(self, request: Request) -> bool:
        """Skipped unless some route has limits."""
        return bool(request.usage)

    def __call__(self, candidate: Candidate, request: Request) -> str | None:
        """The reason to reject ``candidate`` for ``request``, or ``None``."""
        route = candidate.route
        if not route.has_limits:
            return None
        tokens = request.input_tokens + request.output_tokens
        return limit_reason(
            route, request.usage_of(route.name), tokens, candidate.estimated_cost(request)
        )


@dataclass(frozen=True)
class MinQuality(Policy):
    """The route's quality must be at least ``minimum``."""

    minimum: float

    def __call__(self, candidate: Candidate, request: Request) -> str | None:
        """The reason to reject ``candidate`` for ``request``, or ``None``."""
        q = candidate.quality
        return None if q >= self.minimum else f"quality {q:.2f} < {self.minimum:.2f}"


@dataclass(frozen=True)
class MaxCost(Policy):
    """The request's estimated cost on the route must not exceed ``usd``."""

    usd: float

    def __call__(self, candidate: Candidate, request: Request) -> str | None:
        """The reason to reject ``candidate`` for ``request``, or ``None``."""
        cost = candidate.estimated_cost(request)
        return None if cost <= self.usd else f"cost ${cost:.6f} > ${self.usd:.6f}"


DEFAULT_POLICIES: tuple[Policy, ...] = (
    HasTags(),
    HasCapabilities(),
    FitsContext(),
    BreakerClosed(),
    WithinLimits(),
)
"""The router's filters unless told otherwise, cheapest checks first."""


def combine(policies: Iterable[PolicyLike]) -> tuple[Policy, ...]:
    """Normalise policies (objects or callables) into a tuple of :class:`Policy`."""
    return tuple(as_policy(p) for p in policies)
