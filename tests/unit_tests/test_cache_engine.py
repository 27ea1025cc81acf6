from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from oscar_langchain.cache.backends import MemoryBackend, Record, SQLiteBackend
from oscar_langchain.cache.core import CacheRequest, ContextPolicy, TemperaturePolicy
from oscar_langchain.cache.engine import CacheEngine, CacheEvent
from oscar_langchain.embeddings import OfflineEmbeddings
from oscar_langchain.errors import CacheError, ConfigurationError, StaleEntryError
from tests.unit_tests.cache_pairs import PAIRS, evaluate


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


EMB = OfflineEmbeddings(n_features=256)


def semantic(**kwargs) -> CacheEngine:
    return CacheEngine(embed=EMB.embed_documents, threshold=0.6, **kwargs)


def put(engine: CacheEngine, req: CacheRequest, value: object) -> None:
    engine.store(req, value, engine.prepare(req))


def test_exact_hit_miss_and_ttl_with_injected_clock() -> None:
    clock = FakeClock()
    engine = CacheEngine(ttl=60, clock=clock)
    req = CacheRequest("q", model="m")
    assert not engine.lookup(req).hit
    put(engine, req, [1, 2])
    clock.now += 59
    hit = engine.lookup(req)
    assert hit.hit and hit.value == [1, 2] and hit.similarity == 1.0 and not hit.semantic
    clock.now += 1
    assert not engine.lookup(req).hit
    stats = engine.stats()
    short = CacheRequest("short-lived", model="m")
    engine.store(short, 1, engine.prepare(short), ttl=5)  # per-entry TTL
    clock.now += 5
    assert not engine.lookup(short).hit
    with pytest.raises(ConfigurationError, match="ttl"):
        engine.store(short, 1, engine.prepare(short), ttl=-1)
    assert (stats["hits"], stats["misses"], stats["size"]) == (1, 2, 0)
    assert stats["hit_rate"] == pytest.approx(1 / 3)


def test_semantic_hit_and_guard_rejection_are_counted() -> None:
    events: list[CacheEvent] = []
    engine = semantic(on_event=events.append)
    put(engine, CacheRequest("What is the capital of France?", model="m"), "Paris")
    hit = engine.lookup(CacheRequest("Which city is the capital of France?", model="m"))
    assert hit.hit and hit.semantic and hit.value == "Paris" and 0.6 <= hit.similarity < 1
    miss = engine.lookup(CacheRequest("What is the capital of Germany?", model="m"))
    assert not miss.hit and len(miss.rejected) == 1
    assert [e.kind for e in events] == ["rejected"] and "entities" in events[0].detail
    stats = engine.stats()
    assert stats["semantic_hits"] == 1 and stats["rejected"] == 1
    assert stats["semantic_hit_rate"] == pytest.approx(0.5)


def test_without_guard_similarity_alone_decides() -> None:
    engine = semantic(use_guard=False)
    put(engine, CacheRequest("What is the capital of France?", model="m"), "Paris")
    assert engine.lookup(CacheRequest("What is the capital of Germany?", model="m")).hit


def test_same_question_in_another_conversation_or_model_is_not_a_hit() -> None:
    engine = semantic()
    q = "What is the capital of France?"
    put(engine, CacheRequest(q, model="m", system="Answer in French."), "Paris")
    assert not engine.lookup(CacheRequest(q + " ", model="m", system="Answer in English.")).hit
    assert not engine.lookup(CacheRequest(q, model="other", system="Answer in French.")).hit
    assert not engine.lookup(
        CacheRequest(q, model="m", system="Answer in French.", context=("human: hi",))
    ).hit
    loose = semantic(context_policy=ContextPolicy("system"))
    put(loose, CacheRequest(q, model="m", system="S", context=("human: a",)), "Paris")
    assert loose.lookup(CacheRequest(q + "?", model="m", system="S", context=("human: b",))).hit


def test_evicted_or_expired_neighbours_leave_the_index() -> None:
    clock = FakeClock()
    engine = semantic(backend=MemoryBackend(max_size=1), ttl=10, clock=clock)
    put(engine, CacheRequest("How do I reset my password?", model="m"), "a")
    put(engine, CacheRequest("How do I bake sourdough bread?", model="m"), "b")
    assert engine.stats()["evictions"] == 1 and len(engine.index) == 1
    clock.now += 11
    assert not engine.lookup(CacheRequest("How can I bake sourdough bread?", model="m")).hit
    assert len(engine.index) == 0


def test_temperature_bypass_and_sampling() -> None:
    engine = CacheEngine()
    hot = CacheRequest("q", params={"temperature": 0.9})
    lookup = engine.lookup(hot)
    assert lookup.bypassed and not lookup.hit
    engine.store(hot, "x", lookup)  # bypassed: nothing stored
    assert engine.stats()["size"] == 0 and engine.stats()["bypassed"] == 1
    sampler = CacheEngine(
        temperature_policy=TemperaturePolicy("sample", samples=2, rng=random.Random(0))
    )
    answers = set()
    for i in range(20):
        found = sampler.lookup(hot)
        if found.hit:
            answers.add(found.value)
        else:
            sampler.store(hot, f"answer-{i}", found)
    assert len(answers) == 2 and sampler.stats()["size"] == 2


class BrokenBackend(MemoryBackend):
    def get(self, key: str, now: float) -> Record | None:
        raise CacheError("down")

    def put(self, record: Record, now: float) -> list[str]:
        raise CacheError("down")

    def size(self) -> int:
        raise CacheError("down")


def test_backend_failures_are_misses_and_error_events() -> None:
    events: list[CacheEvent] = []
    engine = CacheEngine(BrokenBackend(), on_event=events.append)
    req = CacheRequest("q")
    lookup = engine.lookup(req)
    engine.store(req, "v", lookup)
    assert not lookup.hit
    assert engine.stats()["errors"] == 3  # get, put, size
    assert all(e.kind == "error" for e in events)


def test_embedding_failure_falls_back_to_exact() -> None:
    def broken(texts: list[str]) -> list[list[float]]:
        raise RuntimeError("embedding service down")

    engine = CacheEngine(embed=broken)
    req = CacheRequest("q")
    lookup = engine.lookup(req)
    engine.store(req, "v", lookup)
    assert engine.lookup(req).hit  # exact still works
    assert engine.stats()["errors"] == 1
    assert not engine.prepare(CacheRequest("z")).vector
    assert engine.stats()["errors"] == 2


def test_unserialisable_value_is_not_stored() -> None:
    engine = CacheEngine()
    req = CacheRequest("q")
    engine.store(req, object(), engine.lookup(req))
    assert engine.stats()["errors"] == 1 and engine.stats()["size"] == 0


def test_async_lookup_shares_the_logic() -> None:
    async def aembed(texts: list[str]) -> list[list[float]]:
        return EMB.embed_documents(texts)

    async def go() -> tuple[bool, bool, bool]:
        engine = CacheEngine(aembed=aembed, threshold=0.6)
        req = CacheRequest("What is the capital of France?")
        await engine.astore(req, "Paris", await engine.aprepare(req))
        near = await engine.alookup(CacheRequest("Which city is the capital of France?"))
        thread = CacheEngine(embed=EMB.embed_documents, threshold=0.6)
        await thread.astore(req, "Paris", await thread.alookup(req))
        exact = await thread.alookup(req)
        await engine.aclear()
        return near.hit, exact.hit, (await engine.alookup(req)).hit

    assert asyncio.run(go()) == (True, True, False)
    events: list[CacheEvent] = []
    only_async = CacheEngine(aembed=EMB.aembed_documents, on_event=events.append)
    assert not only_async.lookup(CacheRequest("x")).hit  # sync path: exact only, one event
    assert "use alookup" in events[0].detail


def test_engine_arguments_are_validated() -> None:
    for kwargs, name in (({"threshold": 2}, "threshold"), ({"top_k": 0}, "top_k"),
                         ({"ttl": 0}, "ttl"), ({"backend": "sqlite:///x.db"}, "backend"),
                         ({"embed": OfflineEmbeddings()}, "embed"),
                         ({"aembed": OfflineEmbeddings()}, "aembed")):  # fmt: skip
        with pytest.raises(ConfigurationError, match=name):
            CacheEngine(**kwargs)


def test_false_hit_set_with_offline_embeddings() -> None:
    """Precision/recall on the false-hit set (figures in docs/bench_cache.md)."""
    emb = OfflineEmbeddings()
    guarded = evaluate(lambda: CacheEngine(embed=emb.embed_documents, threshold=0.6))
    unguarded = evaluate(
        lambda: CacheEngine(embed=emb.embed_documents, threshold=0.6, use_guard=False)
    )
    assert guarded["recall"] >= 0.8
    assert guarded["precision"] >= 0.8 > unguarded["precision"]
    # the rules stop every negation, entity, number, date and scope near-miss
    for category in ("negation", "entity", "number", "date", "scope"):
        assert guarded[f"false_hits.{category}"] == 0, category
    assert len(PAIRS) >= 50


def _fake_embed(dim: int) -> Callable[[list[str]], list[list[float]]]:
    return DeterministicFakeEmbedding(size=dim).embed_documents


def test_another_embedding_dimension_is_a_miss_and_an_error_not_a_raise(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    old = CacheEngine(SQLiteBackend(path), embed=_fake_embed(8))
    first = CacheRequest("what is the capital of france", "m")
    old.store(first, "Paris", old.lookup(first))
    events: list[CacheEvent] = []
    new = CacheEngine(SQLiteBackend(path), embed=_fake_embed(16), on_event=events.append)
    again = CacheRequest("what is the capital of france?", "m")
    assert not new.lookup(again).hit  # the 8-dim row is skipped, not raised on
    assert "dimension 8, expected 16" in events[0].detail and new.stats()["errors"] == 1
    new.store(again, "Paris", new.prepare(again))  # new entries index and hit as usual
    assert new.lookup(again).hit and new.stats()["errors"] == 1
    # the old engine reads the new 16-dim row: one error, then misses, never a raise
    other = CacheRequest("what is the capital of germany", "m")
    assert not old.lookup(other).hit
    assert old.stats()["errors"] == 1
    # an embedder changing dimension in one engine: the store is exact-only, no raise
    flip = iter([_fake_embed(8), _fake_embed(16)])
    fickle = CacheEngine(embed=lambda texts: next(flip)(texts), on_event=events.append)
    assert not fickle.lookup(first).hit and not fickle.lookup(other).hit
    assert fickle.stats()["errors"] == 1 and "dimension 16, expected 8" in events[-1].detail


def test_corrupt_vector_bytes_are_an_error_event(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "c.db"))
    backend.put(Record("k", '"v"', partition="p", text="t", vector=b"\x00" * 5), now=0.0)
    engine = CacheEngine(backend, embed=_fake_embed(8))
    req = CacheRequest("a question", "m")
    assert not engine.lookup(req).hit and engine.stats()["errors"] == 1
    engine.store(req, "x", replace(engine.prepare(req), vector=b"\x00" * 6))  # corrupt too
    assert engine.stats()["errors"] == 2 and engine.lookup(req).hit  # exact still works


# -- decode: entries the caller refuses are misses -----------------------------------------


def _refuse(bad: object) -> Callable[[object], object]:
    def decode(value: object) -> object:
        if value == bad:
            raise StaleEntryError(f"{value!r} is stale")
        if value == "corrupt":
            raise CacheError("cannot read it")
        return f"decoded {value}"

    return decode


def test_decode_revives_hits_and_refused_entries_are_counted_misses() -> None:
    events: list[CacheEvent] = []
    engine = CacheEngine(on_event=events.append)
    old, corrupt = CacheRequest("old", "m"), CacheRequest("corrupt", "m")
    put(engine, old, "v1")
    put(engine, corrupt, "corrupt")
    decode = _refuse("v1")
    stale = engine.lookup(old, decode)
    assert not stale.hit and stale.key == old.exact_key()  # stored again under this key
    assert not engine.lookup(corrupt, decode).hit
    assert [(e.kind, e.detail) for e in events] == [
        ("stale", "'v1' is stale"),
        ("error", "cannot revive entry: cannot read it"),
    ]
    engine.store(old, "v2", stale)  # the recomputed answer overwrites the stale one
    assert engine.lookup(old, decode).value == "decoded v2"
    assert asyncio.run(engine.alookup(old, decode)).value == "decoded v2"
    stats = engine.stats()
    assert (stats["hits"], stats["misses"], stats["stale"], stats["errors"]) == (2, 2, 1, 1)


def test_a_refused_neighbour_passes_to_the_next_and_the_exact_entry_is_read_once() -> None:
    engine = semantic(top_k=4)
    put(engine, CacheRequest("What is the capital of France?", "m"), "v1")
    put(engine, CacheRequest("What's the capital of France?", "m"), "fresh")
    hit = engine.lookup(CacheRequest("What is the capital city of France?", "m"), _refuse("v1"))
    assert hit.hit and hit.semantic and hit.value == "decoded fresh"
    assert engine.stats()["stale"] == 1
    again = engine.lookup(CacheRequest("What is the capital of France?", "m"), _refuse("v1"))
    assert again.hit and again.value == "decoded fresh"  # its own stale entry is not retried
    assert engine.stats()["stale"] == 2 and engine.stats()["hits"] == 2
