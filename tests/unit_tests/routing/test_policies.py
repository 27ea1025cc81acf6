from __future__ import annotations

import pytest

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.routing import (
    DEFAULT_POLICIES,
    BreakerClosed,
    FitsContext,
    HasCapabilities,
    HasTags,
    MaxCost,
    MinQuality,
    Route,
    Usage,
    WithinLimits,
)
from oscar_langchain.routing.candidate import Request, resolve
from oscar_langchain.routing.policies import AllOf, AnyOf, as_policy


def cand(**kw):
    kw.setdefault("name", "r")
    kw.setdefault("runnable", None)
    return resolve(Route(**kw))


def test_fits_context_accepts_and_rejects_with_numbers():
    c = cand(context_window=1000)
    assert FitsContext()(c, Request(input_tokens=400, output_tokens=600)) is None
    assert FitsContext()(c, Request(input_tokens=401, output_tokens=600)) == (
        "context window: 401 in + 600 out > 1000"
    )
    assert "margin" in FitsContext(margin=10)(c, Request(input_tokens=400, output_tokens=595))


def test_fits_context_checks_output_cap_and_unknown_window():
    c = cand(max_output_tokens=100)
    assert FitsContext()(c, Request(input_tokens=10**9, output_tokens=50)) is None
    assert FitsContext()(c, Request(output_tokens=101)) == "max output tokens: 101 requested > 100"


def test_capabilities_and_tags():
    c = cand(capabilities={"tools", "json"}, tags={"eu"})
    assert HasCapabilities()(c, Request(capabilities=frozenset({"tools"}))) is None
    assert HasCapabilities()(c, Request(capabilities=frozenset({"vision", "audio"}))) == (
        "missing capabilities: audio, vision"
    )
    assert HasTags()(c, Request(tags=frozenset({"eu"}))) is None
    assert HasTags()(c, Request(tags=frozenset({"us"}))) == "missing tags: us"


def test_breaker_closed():
    c = cand()
    assert BreakerClosed()(c, Request()) is None
    assert BreakerClosed()(c, Request(open_breakers=frozenset({"r"}))) == "circuit open"


def test_within_limits_each_kind():
    c = cand(rpm=2, tpm=100, budget=1.0, max_in_flight=1, input_price=1_000_000.0)
    ok = Request(input_tokens=0, usage={"r": Usage()})
    assert WithinLimits()(c, ok) is None
    assert "in-flight" in WithinLimits()(c, Request(usage={"r": Usage(in_flight=1)}))
    assert "rpm" in WithinLimits()(c, Request(usage={"r": Usage(requests=2)}))
    assert "tpm" in WithinLimits()(c, Request(input_tokens=60, usage={"r": Usage(tokens=50)}))
    # 1 token at $1M per 1M tokens = $1; 0.5 spent already
    assert "budget" in WithinLimits()(c, Request(input_tokens=1, usage={"r": Usage(spent=0.5)}))
    assert WithinLimits()(cand(), Request()) is None  # no limits at all


def test_min_quality_and_max_cost():
    c = cand(quality=0.6, input_price=10.0)
    assert MinQuality(0.5)(c, Request()) is None
    assert MinQuality(0.7)(c, Request()) == "quality 0.60 < 0.70"
    assert MaxCost(0.01)(c, Request(input_tokens=1000)) is None
    assert MaxCost(0.001)(c, Request(input_tokens=1000)).startswith("cost $0.010000")


def test_composition_and_or_with_plain_callables():
    c = cand(context_window=100, capabilities={"tools"})
    long = Request(input_tokens=200)
    both = FitsContext() & HasCapabilities()
    assert isinstance(both, AllOf)
    assert both(c, long).startswith("context window")
    either = FitsContext() | HasCapabilities()
    assert isinstance(either, AnyOf)
    assert either(c, long) is None
    assert (FitsContext() | MinQuality(0.99))(c, long) == (
        "context window: 200 in + 0 out > 100 and quality 0.50 < 0.99"
    )

    def no_r(candidate, request):
        return candidate.name != "r"

    assert (no_r & FitsContext())(c, Request()) == "rejected by no_r"
    assert (FitsContext() & (lambda cand, req: "custom"))(c, Request()) == "custom"
    assert (no_r | FitsContext())(c, Request()) is None
    assert as_policy(lambda cc, rr: None)(c, Request()) is None
    assert (FitsContext() | (lambda cc, rr: True))(c, long) is None


def test_default_policies_reject_first_reason():
    c = cand(context_window=100, tags={"x"})
    req = Request(input_tokens=200, tags=frozenset({"y"}))
    reasons = [p(c, req) for p in DEFAULT_POLICIES]
    assert reasons[0] == "missing tags: y"
    assert reasons[2].startswith("context window")


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"name": ""}, "Route.name"),
        ({"quality": 1.5}, "Route.quality"),
        ({"weight": 0}, "Route.weight"),
        ({"rpm": -1}, "Route.rpm"),
        ({"rpm": 1.5}, "Route.rpm"),
        ({"budget": float("nan")}, "Route.budget"),
        ({"input_price": -1.0}, "Route.input_price"),
        ({"tier": -1}, "Route.tier"),
        ({"capabilities": "tools"}, "Route.capabilities"),
        ({"tags": [""]}, "Route.tags"),
        ({"model": ""}, "Route.model"),
    ],
)
def test_route_validation_names_field(kw, field):
    kw = {"name": "r", "runnable": None, **kw}
    with pytest.raises(ConfigurationError) as info:
        Route(**kw)
    assert info.value.field == field


def test_resolve_fills_from_registry_and_route_wins():
    from oscar_langchain.models import ModelInfo, ModelRegistry

    reg = ModelRegistry(
        [
            ModelInfo(
                name="m",
                context_window=5000,
                input_price=2.0,
                capabilities=frozenset({"tools"}),
                quality=0.7,
            )
        ]
    )
    c = resolve(Route(name="a", runnable=None, model="m", capabilities={"json"}), reg)
    assert (c.context_window, c.input_price, c.quality) == (5000, 2.0, 0.7)
    assert c.capabilities == {"tools", "json"}
    c2 = resolve(Route(name="a", runnable=None, model="m", context_window=10, quality=0.1), reg)
    assert (c2.context_window, c2.quality) == (10, 0.1)
    c3 = resolve(Route(name="a", runnable=None, model="unknown"), reg)
    assert c3.context_window is None and c3.quality == 0.5
