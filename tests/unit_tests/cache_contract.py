"""One contract every cache backend passes (memory and SQLite here, Redis in integration)."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from oscar_langchain.cache.backends import CacheBackend, Record
from oscar_langchain.cache.core import CacheRequest
from oscar_langchain.cache.engine import CacheEngine
from oscar_langchain.cache.eviction import LFU, LRU
from oscar_langchain.errors import ConfigurationError


def vec(*values: float) -> bytes:
    return np.asarray(values, dtype=np.float32).tobytes()


class BackendContract:
    """Subclasses provide ``make_backend(max_size, eviction=None)``; ``backend`` is unbounded."""

    @pytest.fixture
    def make_backend(self):  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture
    def backend(self, make_backend) -> CacheBackend:
        return make_backend(None)

    def test_missing_key_is_none(self, backend: CacheBackend) -> None:
        assert backend.get("nope", now=0.0) is None

    def test_put_then_get_round_trips_every_field(self, backend: CacheBackend) -> None:
        record = Record("k", '{"a": 1}', "part", "text", vec(1, 0), 5.0, 50.0)
        assert backend.put(record, now=5.0) == []
        assert backend.get("k", now=6.0) == record

    def test_overwrite_keeps_one_entry(self, backend: CacheBackend) -> None:
        backend.put(Record("k", "1"), now=0.0)
        backend.put(Record("k", "2"), now=1.0)
        got = backend.get("k", now=2.0)
        assert got is not None and got.payload == "2"
        assert backend.size() == 1

    def test_expired_entry_is_a_miss_and_removed(self, backend: CacheBackend) -> None:
        backend.put(Record("k", "1", expires_at=10.0), now=0.0)
        assert backend.get("k", now=9.9) is not None
        assert backend.get("k", now=10.0) is None
        assert backend.get("k", now=0.0) is None  # gone, not just hidden

    def test_lru_eviction_respects_access_order(self, make_backend) -> None:
        backend = make_backend(2)
        backend.put(Record("a", "1"), now=1.0)
        backend.put(Record("b", "2"), now=2.0)
        assert backend.get("a", now=3.0) is not None  # a is now most recent
        assert backend.put(Record("c", "3"), now=4.0) == ["b"]
        assert backend.get("b", now=5.0) is None
        assert backend.get("a", now=5.0) is not None
        assert backend.size() == 2

    def test_lru_is_the_default_and_policies_are_validated(self, make_backend) -> None:
        assert make_backend(2).eviction == LRU()
        with pytest.raises(ConfigurationError, match="eviction"):
            make_backend(2, "lfu")

    def test_lfu_evicts_the_least_used_entry_never_the_new_one(self, make_backend) -> None:
        backend = make_backend(2, LFU())
        backend.put(Record("a", "1"), now=1.0)
        backend.put(Record("b", "2"), now=2.0)
        for now in (3.0, 4.0, 5.0):  # a: 4 uses
            assert backend.get("a", now=now) is not None
        assert backend.get("b", now=6.0) is not None  # b: 2 uses, and the most recent
        assert backend.put(Record("c", "3"), now=7.0) == ["b"]  # LRU would drop a
        # c has one use, fewer than a, but the entry being written is never the victim
        assert backend.put(Record("d", "4"), now=8.0) == ["c"]
        assert backend.get("a", now=9.0) is not None
        assert backend.get("d", now=9.0) is not None
        assert backend.size() == 2

    def test_lfu_ties_go_to_the_least_recently_used(self, make_backend) -> None:
        backend = make_backend(3, LFU())
        for i, key in enumerate("xyz"):
            backend.put(Record(key, "1"), now=float(i))
        backend.get("x", now=3.0)
        backend.get("y", now=4.0)  # x and y: 2 uses each, x the older; z: 1 use
        assert backend.put(Record("w", "1"), now=5.0) == ["z"]
        backend.get("w", now=6.0)  # now x, y and w all have 2 uses
        assert backend.put(Record("v", "1"), now=7.0) == ["x"]

    def test_lfu_overwrite_starts_again_at_one_use(self, make_backend) -> None:
        backend = make_backend(2, LFU())
        backend.put(Record("a", "1"), now=1.0)
        backend.put(Record("b", "1"), now=2.0)
        for now in (3.0, 4.0):
            backend.get("a", now=now)
        backend.put(Record("a", "2"), now=5.0)  # a: back to one use
        backend.get("b", now=6.0)  # b: 2 uses
        assert backend.put(Record("c", "1"), now=7.0) == ["a"]

    @pytest.mark.parametrize("policy", [LRU(), LFU()], ids=["lru", "lfu"])
    def test_eviction_matches_a_brute_force_oracle(self, make_backend, policy) -> None:
        backend, rng = make_backend(3, policy), random.Random(7)
        model: dict[str, tuple[int, float]] = {}  # key -> (uses, last use)
        for step in range(300):
            now, key, op = float(step), rng.choice("abcdef"), rng.random()
            if op < 0.45:
                evicted = backend.put(Record(key, "1"), now=now)
                model[key] = (1, now)
                expected = sorted((k for k in model if k != key),
                                  key=lambda k: policy.rank(*model[k]))[: len(model) - 3]  # fmt: skip
                for gone in expected:
                    del model[gone]
                assert evicted == expected, step
            elif op < 0.9:
                assert (backend.get(key, now=now) is not None) == (key in model), step
                if key in model:
                    model[key] = (model[key][0] + 1, now)
            else:
                backend.delete(key)
                model.pop(key, None)
        assert backend.size() == len(model)

    @pytest.mark.parametrize("policy", [LRU(), LFU()], ids=["lru", "lfu"])
    def test_expired_entries_are_evicted_before_live_ones(self, make_backend, policy) -> None:
        backend = make_backend(2, policy)
        backend.put(Record("old", "1", expires_at=10.0), now=1.0)
        backend.put(Record("live", "2"), now=2.0)
        for now in (3.0, 4.0, 5.0):  # "old" is the most used and the most recent
            assert backend.get("old", now=now) is not None
        assert backend.put(Record("new", "3"), now=11.0) == ["old"]
        assert backend.get("live", now=12.0) is not None
        assert backend.size() == 2

    def test_rewriting_without_a_ttl_cancels_the_expiry(self, make_backend) -> None:
        backend = make_backend(2)
        backend.put(Record("k", "1", expires_at=10.0), now=1.0)
        backend.put(Record("k", "2"), now=2.0)
        backend.put(Record("a", "3"), now=3.0)
        assert backend.get("k", now=4.0) is not None
        assert backend.put(Record("b", "4"), now=20.0) == ["a"]
        assert backend.get("k", now=21.0) is not None

    def test_lfu_through_the_engine_drops_evicted_vectors(self, make_backend) -> None:
        def embed(texts: list[str]) -> list[list[float]]:
            return [[1.0, 0.0] if "cat" in t else [0.0, 1.0] for t in texts]

        engine = CacheEngine(make_backend(1, LFU()), embed=embed, threshold=0.9,
                             use_guard=False, clock=lambda: 0.0)  # fmt: skip
        cat, dog = CacheRequest("a cat", model="m"), CacheRequest("a dog", model="m")
        engine.store(cat, "meow", engine.lookup(cat))
        engine.store(dog, "woof", engine.lookup(dog))
        assert engine.stats()["evictions"] == 1 and cat.exact_key() not in engine.index
        assert not engine.lookup(CacheRequest("the cat", model="m")).hit
        assert engine.lookup(CacheRequest("the dog", model="m")).value == "woof"

    def test_delete_and_clear(self, backend: CacheBackend) -> None:
        backend.put(Record("a", "1"), now=0.0)
        backend.put(Record("b", "2"), now=0.0)
        backend.delete("a")
        assert backend.get("a", now=0.0) is None
        backend.clear()
        assert backend.size() == 0
        assert backend.get("b", now=0.0) is None

    def test_changes_since_reports_new_vectors_once(self, backend: CacheBackend) -> None:
        if not backend.shared:
            assert backend.changes_since(0) == ([], 0)
            return
        backend.put(Record("a", "1", "p", "t", vec(1, 0)), now=0.0)
        backend.put(Record("b", "2"), now=0.0)  # no vector: not reported
        changes, cursor = backend.changes_since(0)
        assert [(c.key, c.partition, c.vector) for c in changes] == [("a", "p", vec(1, 0))]
        assert backend.changes_since(cursor) == ([], cursor)
        backend.put(Record("c", "3", "p", "t", vec(0, 1)), now=1.0)
        assert [c.key for c in backend.changes_since(cursor)[0]] == ["c"]

    def test_async_methods_match_sync(self, backend: CacheBackend) -> None:
        async def go() -> tuple[Record | None, list[str]]:
            evicted = await backend.aput(Record("k", '"v"', vector=vec(1, 0)), now=0.0)
            got = await backend.aget("k", now=1.0)
            await backend.aclear()
            return got, evicted

        got, evicted = asyncio.run(go())
        assert got is not None and got.payload == '"v"' and evicted == []
        assert backend.size() == 0

    def test_engine_exact_and_semantic_round_trip(self, backend: CacheBackend) -> None:
        def embed(texts: list[str]) -> list[list[float]]:
            return [[1.0, float(len(t) % 3)] for t in texts]

        engine = CacheEngine(backend, embed=embed, threshold=0.9, clock=lambda: 0.0)
        req = CacheRequest("What is 2 plus 2", model="m")
        engine.store(req, {"answer": 4}, engine.lookup(req))
        assert engine.lookup(req).value == {"answer": 4}
        near = engine.lookup(CacheRequest("what is 2 plus 2?", model="m"))
        assert near.hit and near.semantic and near.matched_key == req.exact_key()

    def test_corrupt_entry_is_a_miss_and_an_error_event(self, backend: CacheBackend) -> None:
        events = []
        engine = CacheEngine(backend, on_event=events.append, clock=lambda: 0.0)
        req = CacheRequest("q", model="m")
        backend.put(Record(req.exact_key(), "{not json"), now=0.0)
        lookup = engine.lookup(req)
        assert not lookup.hit
        assert [e.kind for e in events] == ["error"]
        assert engine.stats()["errors"] == 1
        engine.store(req, "fixed", lookup)  # and the entry heals on the next store
        assert engine.lookup(req).value == "fixed"
