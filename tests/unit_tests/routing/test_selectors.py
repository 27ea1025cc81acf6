from __future__ import annotations

import json
import random

import numpy as np
import pytest

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.routing import (
    BestQuality,
    Cheapest,
    HeuristicComplexity,
    LearnedComplexity,
    LeastInFlight,
    LowestLatency,
    QualityFloor,
    RoundRobin,
    Route,
    ThompsonSelector,
    Usage,
    UsageBased,
    WeightedRandom,
    calibrate_threshold,
)
from oscar_langchain.routing.candidate import Request, RouteStats, resolve


def routes():
    spec = [("cheap", 0.1, 0.3), ("mid", 1.0, 0.7), ("strong", 10.0, 0.95)]
    return [
        resolve(Route(name=n, runnable=None, input_price=p, output_price=p, quality=q))
        for n, p, q in spec
    ]


def names(ranking):
    return [c.name for c, _ in ranking]


REQ = Request(input_tokens=1000, output_tokens=100)


def test_cheapest_and_best_quality_with_scores():
    r = Cheapest().rank(routes(), REQ)
    assert names(r) == ["cheap", "mid", "strong"]
    assert r[0][1] == pytest.approx(1100 * 0.1 / 1e6)
    assert names(BestQuality().rank(routes(), REQ)) == ["strong", "mid", "cheap"]


def test_quality_floor_depends_on_complexity():
    sel = QualityFloor()
    assert names(sel.rank(routes(), Request(complexity=0.0)))[0] == "cheap"
    assert names(sel.rank(routes(), Request(complexity=0.5)))[0] == "mid"  # floor 0.6
    ranked = sel.rank(routes(), Request(complexity=1.0))  # floor 0.9
    assert names(ranked) == ["strong", "mid", "cheap"]  # the tail by quality


def test_round_robin_rotates():
    sel = RoundRobin()
    firsts = [names(sel.rank(routes(), REQ))[0] for _ in range(4)]
    assert firsts == ["cheap", "mid", "strong", "cheap"]
    assert sel.rank([], REQ) == []


def test_weighted_random_is_seeded_and_weighted():
    cands = [
        resolve(Route(name="a", runnable=None, weight=9.0)),
        resolve(Route(name="b", runnable=None, weight=1.0)),
    ]
    sel = WeightedRandom(random.Random(7))
    firsts = [names(sel.rank(cands, REQ))[0] for _ in range(2000)]
    share = firsts.count("a") / len(firsts)
    assert 0.86 < share < 0.94
    again = WeightedRandom(random.Random(7))
    assert [names(again.rank(cands, REQ))[0] for _ in range(2000)] == firsts


def test_least_in_flight_and_usage_based():
    cands = routes()
    usage = {"cheap": Usage(in_flight=3, tokens=10), "mid": Usage(in_flight=1, tokens=500)}
    req = Request(usage=usage)
    assert names(LeastInFlight().rank(cands, req)) == ["strong", "mid", "cheap"]
    assert names(UsageBased().rank(cands, req)) == ["strong", "cheap", "mid"]
    limited = [
        resolve(Route(name="a", runnable=None, tpm=1000, rpm=10)),
        resolve(Route(name="b", runnable=None, tpm=100)),
    ]
    req = Request(usage={"a": Usage(tokens=500, requests=9), "b": Usage(tokens=60)})
    assert names(UsageBased().rank(limited, req)) == ["b", "a"]  # 0.6 < 0.9


@pytest.mark.parametrize("metric", ["latency", "per_token", "ttft"])
def test_lowest_latency_variants_explore_unmeasured_first(metric):
    cands = routes()
    cands[0].stats = RouteStats(**{metric: 0.5})
    cands[1].stats = RouteStats(**{metric: 0.2})
    assert names(LowestLatency(metric).rank(cands, REQ)) == ["strong", "mid", "cheap"]


def test_lowest_latency_rejects_unknown_metric():
    with pytest.raises(ConfigurationError):
        LowestLatency("speed")  # type: ignore[arg-type]


def test_route_stats_ewma():
    s = RouteStats(alpha=0.5)
    s.observe(1.0, output_tokens=10, ttft=0.1)
    s.observe(2.0, output_tokens=10, ttft=0.3)
    s.observe_failure()
    assert (s.latency, s.per_token, s.ttft) == pytest.approx((1.5, 0.15, 0.2))
    assert (s.successes, s.failures) == (2, 1)


def test_thompson_learns_cheap_is_enough_for_easy_and_not_for_hard():
    sel = ThompsonSelector(quality_target=0.8, bands=2, rng=random.Random(1))
    cands = routes()
    truth = {
        ("cheap", 0): 0.95,
        ("cheap", 1): 0.2,
        ("mid", 0): 0.95,
        ("mid", 1): 0.5,
        ("strong", 0): 0.97,
        ("strong", 1): 0.95,
    }
    rng = random.Random(2)
    for i in range(600):
        cx = 0.2 if i % 2 else 0.8
        req = Request(input_tokens=100, complexity=cx)
        chosen = sel.rank(cands, req)[0][0].name
        ok = rng.random() < truth[(chosen, sel.band(cx))]
        sel.update(chosen, cx, 1.0 if ok else 0.0)
    easy = [
        sel.rank(cands, Request(input_tokens=100, complexity=0.2))[0][0].name for _ in range(100)
    ]
    hard = [
        sel.rank(cands, Request(input_tokens=100, complexity=0.8))[0][0].name for _ in range(100)
    ]
    assert easy.count("cheap") > 80
    assert hard.count("strong") > 80
    est = sel.estimates()
    assert est["strong"][1] > est["cheap"][1]
    restored = ThompsonSelector(quality_target=0.8, bands=2)
    restored.load_dict(json.loads(json.dumps(sel.to_dict())))
    assert restored.estimates() == est


def test_thompson_validation():
    with pytest.raises(ConfigurationError):
        ThompsonSelector(quality_target=0)
    with pytest.raises(ConfigurationError):
        ThompsonSelector(bands=0)
    with pytest.raises(ConfigurationError):
        ThompsonSelector(prior_strength=-1)
    with pytest.raises(ConfigurationError):
        ThompsonSelector().update("a", 0.1, 2.0)
    with pytest.raises(ConfigurationError):
        ThompsonSelector(bands=2).load_dict({"bands": 3, "posterior": []})


def test_heuristic_features_and_order():
    h = HeuristicComplexity()
    easy = h("What is the capital of France?")
    code = h("```python\ndef f(x):\n    return x;\n```\nWhy does this raise? Traceback ...")
    math_ = h("Prove that the integral of 2*x from 0 to 1 equals 1 and solve the equation x+1=2.")
    steps = h(
        "First explain the design, then compare the trade-offs, finally justify it step by step."
    )
    assert easy < 0.15
    assert all(v > easy + 0.15 for v in (code, math_, steps))
    feats = h.features("Why? How? What? When? Where?")
    assert feats["questions"] == 1.0 and set(feats) == set(h.weights)
    assert 0.0 <= h("x " * 5000) <= 1.0
    again = HeuristicComplexity.from_json(h.to_json())
    assert again("First explain, then compare.") == h("First explain, then compare.")


def test_heuristic_validation():
    with pytest.raises(ConfigurationError):
        HeuristicComplexity(weights={"nope": 1.0})
    with pytest.raises(ConfigurationError):
        HeuristicComplexity(weights={"length": -1.0})
    with pytest.raises(ConfigurationError):
        HeuristicComplexity(full_length=0)
    with pytest.raises(ConfigurationError):
        HeuristicComplexity.from_json('{"kind": "learned"}')


def _data():
    easy = [
        "hi there",
        "thanks a lot",
        "what time is it",
        "hello friend",
        "good morning",
        "say hi",
        "ok thanks",
        "capital of france",
    ]
    hard = [
        "prove the theorem about primes",
        "derive the integral step by step",
        "explain the trade-offs of consensus algorithms",
        "design a distributed cache",
        "analyze the complexity of this algorithm",
        "compare two proofs of the theorem",
        "derive the gradient of the loss",
        "explain why the proof fails",
    ]
    return easy + hard, [0] * len(easy) + [1] * len(hard)


def test_learned_matches_sklearn_and_round_trips_json(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts, labels = _data()
    model = LearnedComplexity.fit(texts, labels)
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=20_000)
    clf = LogisticRegression(max_iter=1000).fit(vec.fit_transform(texts), labels)
    probe = ["prove the integral", "hi friend", "unknown words only"]
    expected = clf.predict_proba(vec.transform(probe))[:, 1]
    np.testing.assert_allclose(model.probability(probe), expected, rtol=1e-9, atol=1e-12)

    model.calibrate(texts, strong_share=0.25)
    share = np.mean([model.needs_strong(t) for t in texts])
    assert share == pytest.approx(0.25)
    path = tmp_path / "complexity.json"
    model.save(path)
    assert json.loads(path.read_text())["kind"] == "learned"
    loaded = LearnedComplexity.load(path)
    np.testing.assert_allclose(loaded.probability(probe), model.probability(probe))
    assert loaded.threshold == model.threshold
    score = loaded("derive the integral of the theorem step by step")
    assert 0.5 <= score <= 1.0
    assert 0.0 <= loaded("hi") < 0.5


def test_learned_validation(tmp_path):
    with pytest.raises(ConfigurationError):
        LearnedComplexity.fit(["a"], [0, 1])
    with pytest.raises(ConfigurationError):
        LearnedComplexity.fit(["a", "b"], [1, 1])
    with pytest.raises(ConfigurationError):
        LearnedComplexity({"a": 0}, [1.0], [1.0, 2.0], 0.0)
    with pytest.raises(ConfigurationError):
        LearnedComplexity({"a": 0}, [1.0], [1.0], 0.0, threshold=1.0)
    bad = tmp_path / "x.json"
    bad.write_text('{"kind": "heuristic"}')
    with pytest.raises(ConfigurationError):
        LearnedComplexity.load(bad)


def test_calibrate_threshold():
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert calibrate_threshold(scores, 0.3) == 0.8
    assert calibrate_threshold(scores, 1.0) == 0.1
    assert calibrate_threshold(scores, 0.0) > 1.0
    with pytest.raises(ConfigurationError):
        calibrate_threshold(scores, 1.5)
    with pytest.raises(ConfigurationError):
        calibrate_threshold([], 0.5)
