"""langchain-tests cache suites for OscarCache on memory and SQLite (Redis: integration)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.caches import BaseCache
from langchain_core.globals import set_llm_cache
from langchain_core.language_models import FakeListChatModel, FakeListLLM
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.outputs import Generation
from langchain_tests.integration_tests import AsyncCacheTestSuite, SyncCacheTestSuite

from oscar_langchain.cache import LFU, CacheEngine, MemoryBackend, OscarCache, SQLiteBackend
from oscar_langchain.cache.backends import Record
from oscar_langchain.embeddings import OfflineEmbeddings


class TestMemorySync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self) -> BaseCache:
        return OscarCache()


class TestMemoryAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self) -> BaseCache:
        return OscarCache()


class TestSemanticMemorySync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self) -> BaseCache:
        return OscarCache(embeddings=OfflineEmbeddings(n_features=256))


class TestSQLiteSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, tmp_path: Path) -> Iterator[BaseCache]:
        backend = SQLiteBackend(tmp_path / "lc.db")
        yield OscarCache(CacheEngine(backend))
        backend.close()


class TestSQLiteAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, tmp_path: Path) -> BaseCache:
        return OscarCache(CacheEngine(SQLiteBackend(tmp_path / "lc.db")))


class TestSQLiteSemanticSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, tmp_path: Path) -> Iterator[BaseCache]:
        backend = SQLiteBackend(tmp_path / "lc.db")
        embed = OfflineEmbeddings(n_features=256).embed_documents
        yield OscarCache(CacheEngine(backend, embed=embed))
        backend.close()


class TestSemanticLFUAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self) -> BaseCache:
        emb = OfflineEmbeddings(n_features=256)
        backend = MemoryBackend(max_size=100, eviction=LFU())
        return OscarCache(CacheEngine(backend, aembed=emb.aembed_documents))


@pytest.fixture
def global_cache() -> Iterator[None]:
    yield
    set_llm_cache(None)


def test_set_llm_cache_serves_chat_models_semantically(global_cache: None) -> None:
    cache = OscarCache(CacheEngine(embed=OfflineEmbeddings().embed_documents, threshold=0.6))
    set_llm_cache(cache)
    model = FakeListChatModel(responses=["Paris", "Berlin", "Paris!"])
    system = SystemMessage("Be brief.")
    assert model.invoke([system, HumanMessage("What is the capital of France?")]).content == "Paris"
    paraphrase = [system, HumanMessage("Which city is the capital of France?")]
    assert model.invoke(paraphrase).content == "Paris"
    assert model.invoke([system, HumanMessage("What is the capital of Germany?")]).content == (
        "Berlin"
    )
    other_conversation = [
        SystemMessage("Be verbose."),
        HumanMessage("What is the capital of France?"),
    ]
    assert model.invoke(other_conversation).content == "Paris!"
    stats = cache.stats()
    assert stats["semantic_hits"] == 1 and stats["rejected"] == 1


def test_set_llm_cache_with_llms_and_corrupt_entries(global_cache: None) -> None:
    engine = CacheEngine()
    cache = OscarCache(engine)
    set_llm_cache(cache)
    llm = FakeListLLM(responses=["one", "two"])
    assert llm.invoke("q") == "one" and llm.invoke("q") == "one"
    request = cache._request("p", "llm")
    engine.backend.put(Record(request.exact_key(), '[{"lc": 1, "type": "bogus"}]'), now=0.0)
    assert cache.lookup("p", "llm") is None
    cache.update("p", "llm", [Generation(text="x")])
    assert cache.lookup("p", "llm") == [Generation(text="x")]
    assert engine.stats()["errors"] == 1


def test_temperature_in_llm_string_follows_the_policy() -> None:
    cache = OscarCache()
    hot = "model---[('temperature', 0.7)]"
    cache.update("q", hot, [Generation(text="x")])
    assert cache.lookup("q", hot) is None  # bypassed by default
    assert cache.stats()["bypassed"] == 1
