"""Routing over N models: routes, filter policies, selectors, limits and the router."""

from oscar_langchain.routing.adaptive import ThompsonSelector
from oscar_langchain.routing.candidate import Candidate, Request, RouteStats
from oscar_langchain.routing.complexity import (
    HeuristicComplexity,
    LearnedComplexity,
    calibrate_threshold,
)
from oscar_langchain.routing.decision import RouteDecision
from oscar_langchain.routing.engine import RoutingEngine
from oscar_langchain.routing.limits import LimitStore, MemoryLimitStore, Reservation, Usage
from oscar_langchain.routing.policies import (
    DEFAULT_POLICIES,
    BreakerClosed,
    FitsContext,
    HasCapabilities,
    HasTags,
    MaxCost,
    MinQuality,
    Policy,
    WithinLimits,
)
from oscar_langchain.routing.redis_limits import RedisLimitStore
from oscar_langchain.routing.route import Route
from oscar_langchain.routing.selectors import (
    BestQuality,
    Cheapest,
    LeastInFlight,
    LowestLatency,
    QualityFloor,
    RoundRobin,
    UsageBased,
    WeightedRandom,
)
from oscar_langchain.routing.status import format_status

__all__ = [
    "DEFAULT_POLICIES",
    "BestQuality",
    "BreakerClosed",
    "Candidate",
    "Cheapest",
    "FitsContext",
    "HasCapabilities",
    "HasTags",
    "HeuristicComplexity",
    "LearnedComplexity",
    "LeastInFlight",
    "LimitStore",
    "LowestLatency",
    "MaxCost",
    "MemoryLimitStore",
    "MinQuality",
    "Policy",
    "QualityFloor",
    "RedisLimitStore",
    "Request",
    "Reservation",
    "RoundRobin",
    "Route",
    "RouteDecision",
    "RouteStats",
    "RoutingEngine",
    "ThompsonSelector",
    "Usage",
    "UsageBased",
    "WeightedRandom",
    "WithinLimits",
    "calibrate_threshold",
    "format_status",
]
