"""A route: one model the router may send a request to, with its limits and traits.

:class:`Route` is frozen and validated; every problem names the field. Traits that
the model registry knows (context window, prices, capabilities) may be left out and
are filled from ``oscar_langchain.models`` by the router; values set on the route win.

Example:
    >>> r = Route(name="small", runnable=None, quality=0.4, capabilities={"tools"}, rpm=60)
    >>> r.capabilities, r.rpm, r.weight
    (frozenset({'tools'}), 60, 1.0)
    >>> Route(name="", runnable=None)
    Traceback (most recent call last):
    ...
    oscar_langchain.errors.ConfigurationError: Route.name: must be a non-empty string
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from oscar_langchain.errors import ConfigurationError

__all__ = ["Route"]


def _names(value: Iterable[str] | str, field_name: str) -> frozenset[str]:
    if isinstance(value, str):
        raise ConfigurationError(field_name, "must be a collection of strings, not a string")
    items = frozenset(value)
    if not all(isinstance(v, str) and v for v in items):
        raise ConfigurationError(field_name, "every item must be a non-empty string")
    return items


def _positive(value: float | None, field_name: str, *, integer: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(field_name, f"must be a number, got {type(value).__name__}")
    if integer and not isinstance(value, int):
        raise ConfigurationError(field_name, "must be an integer")
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(field_name, f"must be > 0, got {value!r}")


@dataclass(frozen=True, eq=False)
class Route:
    """One destination of the router.

    Attributes:
        name: unique name of the route (used in decisions, limits and status).
        runnable: what is called (a chat model or any LangChain Runnable).
        model: model id in the model registry (context window, prices, capabilities).
        capabilities: what the route can do (``tools``, ``vision``, ``json``, ``streaming``...);
            merged with the registry's capabilities for ``model``.
        quality: expected answer quality in [0, 1] (higher is better); default: the
            registry's quality for ``model``, else 0.5.
        tier: coarse quality tier (0 = cheapest); informative, shown in status.
        weight: relative weight for the weighted-random selector (> 0).
        rpm: requests per minute allowed on this route (``None``: unlimited).
        tpm: tokens per minute allowed (input + requested output; ``None``: unlimited).
        budget: spend allowed on this route in USD (``None``: unlimited).
        max_in_flight: concurrent calls allowed (``None``: unlimited).
        tags: labels a request may ask for (``config["configurable"]["route_tags"]``).
        context_window: overrides the registry's context window (tokens).
        max_output_tokens: overrides the registry's output cap (tokens).
        input_price: overrides the registry's input price (USD per 1M tokens).
        output_price: overrides the registry's output price (USD per 1M tokens).
    """

    name: str
    runnable: Any = field(repr=False)
    model: str | None = None
    capabilities: frozenset[str] = frozenset()
    quality: float | None = None
    tier: int = 0
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    budget: float | None = None
    max_in_flight: int | None = None
    tags: frozenset[str] = frozenset()
    context_window: int | None = None
    max_output_tokens: int | None = None
    input_price: float | None = None
    output_price: float | None = None
    _has_limits: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError("Route.name", "must be a non-empty string")
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise ConfigurationError("Route.model", "must be a non-empty string or None")
        object.__setattr__(self, "capabilities", _names(self.capabilities, "Route.capabilities"))
        object.__setattr__(self, "tags", _names(self.tags, "Route.tags"))
        if self.quality is not None and (
            isinstance(self.quality, bool)
            or not isinstance(self.quality, (int, float))
            or not 0.0 <= self.quality <= 1.0
        ):
            raise ConfigurationError("Route.quality", f"must be in [0, 1], got {self.quality!r}")
        if isinstance(self.tier, bool) or not isinstance(self.tier, int) or self.tier < 0:
            raise ConfigurationError("Route.tier", f"must be an integer >= 0, got {self.tier!r}")
        _positive(self.weight, "Route.weight")
        for name in ("rpm", "tpm", "max_in_flight", "context_window", "max_output_tokens"):
            _positive(getattr(self, name), f"Route.{name}", integer=True)
        _positive(self.budget, "Route.budget")
        for name in ("input_price", "output_price"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigurationError(f"Route.{name}", f"must be >= 0, got {value!r}")
        limits = (self.rpm, self.tpm, self.budget, self.max_in_flight)
        object.__setattr__(self, "_has_limits", any(v is not None for v in limits))

    @property
    def has_limits(self) -> bool:
        """Whether any rpm/tpm/budget/in-flight limit is set."""
        return any(v is not None for v in (self.rpm, self.tpm, self.budget, self.max_in_flight))
