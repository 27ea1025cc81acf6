"""langchain-tests cache suites for OscarCache on memory and SQLite (Redis: integration)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.caches import BaseCache
from langchain_core.globals import set_llm_cache
from langchain_core.language_models import FakeListChatModel, FakeListLLM
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.outputs import Generation
from langchain_tests.integration_tests import AsyncCacheTestSuite, SyncCacheTestSuite
from pydantic import Field

from oscar_langchain.cache import LFU, CacheEngine, MemoryBackend, OscarCache, SQLiteBackend
from oscar_langchain.cache.backends import Record
from oscar_langchain.cache.langchain_cache import llm_string_temperature
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
    stats = engine.stats()  # the corrupt entry was a miss, not a hit
    assert (stats["errors"], stats["hits"], stats["misses"]) == (1, 2, 2)


def test_temperature_in_llm_string_follows_the_policy() -> None:
    cache = OscarCache()
    hot = "model---[('temperature', 0.7)]"
    cache.update("q", hot, [Generation(text="x")])
    assert cache.lookup("q", hot) is None  # bypassed by default
    assert cache.stats()["bypassed"] == 1


class _SerialisableChat(FakeListChatModel):
    """A chat model whose llm_string is JSON + '---' + the call's params (as ChatOpenAI's)."""

    temperature: float | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True


class _ReprChat(FakeListChatModel):
    """A chat model whose llm_string is the repr of its sorted invocation params."""

    temperature: float | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    client: Any = None

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "model_kwargs": self.model_kwargs,
            "client": self.client,
        }


def _real_llm_strings() -> list[tuple[str, str, float | None]]:
    """``(case, llm_string, temperature)`` as langchain-core builds them."""
    ser, rep = _SerialisableChat, _ReprChat
    cases: list[tuple[str, Any, dict[str, Any], float | None]] = [
        ("json, float", ser(responses=[], temperature=0.7), {}, 0.7),
        ("json, int", ser(responses=[], temperature=1), {}, 1.0),
        ("json, none", ser(responses=[], temperature=None), {}, None),
        ("json, absent", ser(responses=[]), {}, None),
        ("json, tiny float", ser(responses=[], temperature=1e-5), {}, 1e-5),
        ("json, call overrides", ser(responses=[], temperature=0.0), {"temperature": 0.9}, 0.9),
        ("json, call to 0", ser(responses=[], temperature=0.9), {"temperature": 0}, 0.0),
        ("json, model_kwargs", ser(responses=[], model_kwargs={"temperature": 0.8}), {}, 0.8),
        (
            "json, top_temperature",
            ser(responses=[], temperature=0.0, model_kwargs={"top_temperature": 0.5}),
            {},
            0.0,
        ),
        (
            "json, lookalike stop",
            ser(responses=[], temperature=0.9),
            {"stop": ['"temperature": 0']},
            0.9,
        ),
        ("repr, float", rep(responses=[], temperature=0.7), {}, 0.7),
        ("repr, none", rep(responses=[]), {}, None),
        ("repr, call overrides", rep(responses=[], temperature=0.0), {"temperature": 0.4}, 0.4),
        ("repr, model_kwargs", rep(responses=[], model_kwargs={"temperature": 0.8}), {}, 0.8),
        (
            "repr, lookalike stop",
            rep(responses=[], temperature=0.9),
            {"stop": ["('temperature', 0)"]},
            0.9,
        ),
        (
            "repr, unparsable value",
            rep(responses=[], temperature=0.3, client=object()),
            {"stop": ["('temperature', 0)"]},
            0.3,
        ),
        ("repr, tools", rep(responses=[]), {"tools": [{"examples": [{"temperature": 20}]}]}, None),
    ]
    out = []
    for name, model, kwargs, expected in cases:
        stop = kwargs.pop("stop", None)
        out.append((name, model._get_llm_string(stop=stop, **kwargs), expected))
    return out


@pytest.mark.parametrize(("case", "llm_string", "expected"), _real_llm_strings())
def test_temperature_is_read_from_real_llm_strings(
    case: str, llm_string: str, expected: float | None
) -> None:
    assert OscarCache()._request("q", llm_string).temperature == expected, (case, llm_string)


def test_a_call_time_temperature_in_llm_string_bypasses_the_cache() -> None:
    model = _SerialisableChat(responses=["a", "b"], temperature=0.0)
    set_llm_cache(OscarCache())
    try:
        assert model.invoke("q", temperature=0.9).content == "a"
        assert model.invoke("q", temperature=0.9).content == "b"
    finally:
        set_llm_cache(None)


@pytest.mark.parametrize(
    ("llm_string", "expected"),
    [
        ("model---[('temperature', 0.7)]", 0.7),  # not JSON + params: read as pairs only
        ("custom [('temperature', 1e-05), ('x', <nope>]", 1e-05),
        ("custom [('temperature', 1.2.3)]", None),
        ("custom {'temperature': 0.9}", None),
        ('{"kwargs": {"temperature": 0.5}}', 0.5),  # a model's JSON alone
        ('{"kwargs": {"temperature": 0.5}} trailing', None),
        ("{not json---[('temperature', 0.2)]", 0.2),
    ],
)
def test_temperature_in_other_llm_strings(llm_string: str, expected: float | None) -> None:
    assert llm_string_temperature(llm_string) == expected
