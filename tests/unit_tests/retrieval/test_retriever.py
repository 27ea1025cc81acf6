"""HybridRetriever and QueryOptimizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableLambda

from oscar_langchain.errors import RetrievalError
from oscar_langchain.retrieval import HybridRetriever, QueryOptimizer
from oscar_langchain.retrieval.query_optimizer import QueryHistory, normalise_query

TEXTS = [
    "Cats purr when they are content and relaxed.",
    "Dogs bark to warn their owners about strangers.",
    "Solar panels convert sunlight into electricity.",
    "Wind turbines convert wind energy into electricity.",
    "Photosynthesis lets plants turn sunlight into sugar.",
    "The stock market fell sharply after the rate decision.",
]
META = [{"topic": t} for t in ["pets", "pets", "energy", "energy", "biology", "finance"]]


class BagOfWords(Embeddings):
    """Tiny deterministic embeddings where shared words mean similarity."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _vec(self, text: str) -> list[float]:
        vec = [0.0] * 64
        for word in text.lower().split():
            vec[hash(word.strip(".,?")) % 64] += 1.0
        return vec

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        self.calls.append(text)
        return self._vec(text)


@pytest.fixture
def retriever() -> HybridRetriever:
    return HybridRetriever.from_texts(TEXTS, metadatas=META, embeddings=BagOfWords(), k=3)


def test_modes_and_per_call_options(retriever: HybridRetriever) -> None:
    hits = retriever.invoke("sunlight electricity")
    assert len(hits) == 3 and hits[0].page_content.startswith("Solar")
    assert all(isinstance(d.id, str) for d in hits)
    bm25_only = retriever.invoke("sunlight", bm25_weight=1, dense_weight=0)
    assert {d.page_content[:5] for d in bm25_only} == {"Solar", "Photo"}  # only matches
    dense_only = retriever.invoke("sunlight", bm25_weight=0, k=6)
    assert len(dense_only) == 6
    assert retriever.invoke("electricity", k=1, fusion="score")[0].metadata["topic"] == "energy"
    pets = retriever.invoke("electricity sunlight", k=5, filter={"topic": ["pets"]})
    assert {d.metadata["topic"] for d in pets} == {"pets"}
    pred = retriever.invoke("cats", filter=lambda m: m["topic"] != "pets")
    assert all(d.metadata["topic"] != "pets" for d in pred)
    configured = retriever.invoke("cats", {"configurable": {"search_kwargs": {"k": 1}}})
    assert len(configured) == 1


async def test_async_matches_sync(retriever: HybridRetriever) -> None:
    for kwargs in ({}, {"dense_weight": 0}, {"bm25_weight": 0}):
        sync = retriever.invoke("wind energy", **kwargs)  # type: ignore[arg-type]
        asyn = await retriever.ainvoke("wind energy", **kwargs)  # type: ignore[arg-type]
        assert [d.id for d in sync] == [d.id for d in asyn]


def test_stable_ids_upsert_delete(retriever: HybridRetriever) -> None:
    again = HybridRetriever.from_texts(TEXTS, metadatas=META, embeddings=BagOfWords())
    assert sorted(again._docs) == sorted(retriever._docs)  # deterministic ids
    ids = retriever.add_texts(TEXTS[:2], metadatas=META[:2])  # same content: upsert
    assert len(retriever) == len(TEXTS) and all(i in retriever._docs for i in ids)
    new = retriever.add_documents([Document("Quantum computers use qubits.", id="q1")])
    assert new == ["q1"]
    assert retriever.invoke("qubits", dense_weight=0)[0].id == "q1"
    retriever.add_documents([Document("Qubits decohere.")], ids=["q1"])
    assert retriever.get_by_ids(["q1", "nope"])[0].page_content == "Qubits decohere."
    retriever.delete(["q1"])
    assert retriever.invoke("qubits", dense_weight=0) == []
    with pytest.raises(RetrievalError, match="unknown"):
        retriever.delete(["q1"])


async def test_async_add(retriever: HybridRetriever) -> None:
    ids = await retriever.aadd_documents([Document("Bees make honey.", id="bee")])
    assert ids == ["bee"] and (await retriever.ainvoke("honey", k=1))[0].id == "bee"


def test_results_are_copies(retriever: HybridRetriever) -> None:
    hit = retriever.invoke("cats", k=1)[0]
    hit.metadata["topic"] = "changed"
    assert retriever.invoke("cats", k=1)[0].metadata["topic"] == "pets"


def test_bad_input(retriever: HybridRetriever) -> None:
    with pytest.raises(ValueError, match="empty corpus"):
        HybridRetriever.from_texts([], embeddings=BagOfWords())
    with pytest.raises(ValueError, match="non-empty"):
        retriever.invoke("   ")
    with pytest.raises(ValueError, match="k must be > 0"):
        retriever.invoke("cats", k=0)
    with pytest.raises(ValueError, match="weights"):
        retriever.invoke("cats", bm25_weight=0, dense_weight=0)
    with pytest.raises(ValueError, match="k"):
        HybridRetriever(embeddings=BagOfWords(), k=0)
    with pytest.raises(ValueError, match="both 0"):
        HybridRetriever(embeddings=BagOfWords(), bm25_weight=0, dense_weight=0)
    with pytest.raises(ValueError, match="entries"):
        retriever.add_texts(["a"], metadatas=[{}, {}])
    with pytest.raises(ValueError, match="entries"):
        retriever.add_texts(["a"], ids=["x", "y"])
    with pytest.raises(TypeError):
        retriever.invoke("cats", top_n=3)
    assert HybridRetriever(embeddings=BagOfWords()).invoke("anything") == []


class Miscounting(BagOfWords):
    """Embeddings that return one vector too few (a broken provider)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return super().embed_documents(texts)[:-1]


class Wider(BagOfWords):
    """Embeddings of another dimension than the index's (the wrong model)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[*v, 1.0] for v in super().embed_documents(texts)]


@pytest.mark.parametrize(
    ("embeddings", "match"), [(Miscounting(), "returned 1 vectors for 2"), (Wider(), "65")]
)
async def test_failed_add_changes_no_index(
    retriever: HybridRetriever, embeddings: Embeddings, match: str, tmp_path: Path
) -> None:
    before = (sorted(retriever._docs), sorted(retriever.bm25.ids()), len(retriever._dense))
    retriever.embeddings = embeddings
    with pytest.raises(ValueError, match=match):
        retriever.add_texts(["Fish swim in rivers.", "Owls hoot at night."])
    with pytest.raises(ValueError, match=match):
        await retriever.aadd_documents([Document("Fish swim."), Document("Owls hoot.")])
    after = (sorted(retriever._docs), sorted(retriever.bm25.ids()), len(retriever._dense))
    assert after == before
    retriever.embeddings = BagOfWords()
    retriever.save(tmp_path / "idx")
    loaded = HybridRetriever.load(tmp_path / "idx", embeddings=BagOfWords())
    assert len(loaded) == len(TEXTS)


def test_mixed_dimensions_rejected_on_an_empty_index() -> None:
    class Ragged(BagOfWords):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[1.0, 0.0], [1.0, 0.0, 0.0]]

    retriever = HybridRetriever(embeddings=Ragged())
    with pytest.raises(ValueError, match="dimension 2, 3; the dense index is empty"):
        retriever.add_texts(["a b", "c d"])
    assert len(retriever) == 0 and retriever.bm25.ids() == []


def test_default_embeddings_are_offline() -> None:
    retriever = HybridRetriever.from_texts(TEXTS)
    assert type(retriever.embeddings).__name__ == "OfflineEmbeddings"
    assert retriever.invoke("solar panels sunlight", bm25_weight=0)[0].page_content == TEXTS[2]


def test_save_load_round_trip(retriever: HybridRetriever, tmp_path: Path) -> None:
    retriever.delete([retriever.invoke("stock market", k=1)[0].id or ""])
    retriever.save(tmp_path / "r")
    for mmap in (False, True):
        loaded = HybridRetriever.load(tmp_path / "r", embeddings=BagOfWords(), mmap=mmap)
        assert loaded.k == 3 and loaded.tokenizer == retriever.tokenizer
        for q in ("sunlight", "dogs bark", "energy"):
            assert loaded.invoke(q) == retriever.invoke(q)
    retriever.save(tmp_path / "r")  # overwrite in place
    assert len(HybridRetriever.load(tmp_path / "r", embeddings=BagOfWords())) == 5


def test_failed_save_never_leaves_loadable_index(tmp_path: Path) -> None:
    retriever = HybridRetriever(embeddings=BagOfWords())
    retriever.add_texts(["x y"], metadatas=[{"when": object()}])
    with pytest.raises(RetrievalError, match="JSON"):
        retriever.save(tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RetrievalError, match="no index directory"):
        HybridRetriever.load(tmp_path / "bad", embeddings=BagOfWords())


def test_corrupt_retriever_dir(retriever: HybridRetriever, tmp_path: Path) -> None:
    retriever.save(tmp_path / "r")
    (tmp_path / "r" / "docs.json").write_text("[]" + " " * 10)
    with pytest.raises(RetrievalError, match="truncated"):
        HybridRetriever.load(tmp_path / "r", embeddings=BagOfWords())
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    manifest["files"]["docs.json"] = 12
    manifest["meta"]["k"] = -1
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RetrievalError, match="bad settings"):
        HybridRetriever.load(tmp_path / "r", embeddings=BagOfWords())
    manifest["meta"]["k"] = 3
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RetrievalError, match="disagree"):
        HybridRetriever.load(tmp_path / "r", embeddings=BagOfWords())


def test_mmr_option() -> None:
    texts = ["solar power", "solar power plants", "solar power today", "wind power"]
    r = HybridRetriever.from_texts(texts, embeddings=BagOfWords(), mmr=True, mmr_lambda=0.2)
    assert len(r.invoke("solar power", bm25_weight=0, k=2)) == 2


# -- query optimizer ---------------------------------------------------------------------
class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append(data)


def test_optimizer_expands_from_index_and_composes(retriever: HybridRetriever) -> None:
    opt = QueryOptimizer(retriever=retriever, expansion_terms=3, feedback_docs=2)
    rewrite = opt.invoke("  sunlight\u200b ")
    assert rewrite.startswith("sunlight ") and len(rewrite.split()) > 1
    chain = opt | retriever
    assert chain.invoke("sunlight")[0].metadata["topic"] in {"energy", "biology"}
    off = {"configurable": {"query_optimizer_enabled": False}}
    assert opt.invoke("  raw  ", off) == "  raw  "
    assert QueryOptimizer(enabled=False).invoke(" raw ") == " raw "
    assert QueryOptimizer(output="list").invoke(" a  b ") == ["a b", "a b"]
    assert QueryOptimizer(enabled=False, output="list").invoke("a") == ["a", "a"]
    rec = Recorder()
    opt.invoke("sunlight", {"callbacks": [rec]})
    assert rec.events[-1]["oscar.query_optimizer.history_hit"] is True


async def test_optimizer_async_and_feedback_learning(retriever: HybridRetriever) -> None:
    opt = QueryOptimizer(retriever=retriever, expansion_terms=2)
    expanded = await opt.ainvoke("wind")
    assert expanded != "wind"
    assert opt.feedback("wind", 0.0)  # the expansion did not help
    assert await opt.ainvoke("wind") == "wind"  # plain query served now
    assert opt.feedback("wind", 1.0)
    assert await opt.ainvoke("wind") == "wind"
    assert not opt.feedback("never seen", 1.0)
    with pytest.raises(ValueError, match="reward"):
        opt.feedback("wind", 2.0)
    with pytest.raises(TypeError):
        opt.optimize(123)  # type: ignore[arg-type]


def test_optimizer_recomputes_rewrites_when_the_index_changes() -> None:
    texts = ["solar panels convert sunlight", "solar inverter efficiency",
             "wind turbines and blades", "hydro dams store water"]  # fmt: skip
    r = HybridRetriever(embeddings=BagOfWords())
    opt = QueryOptimizer(retriever=r, expansion_terms=2, feedback_docs=2)
    assert opt.invoke("solar panels") == "solar panels"  # nothing indexed yet
    ids = r.add_texts(texts)
    fresh = QueryOptimizer(retriever=r, expansion_terms=2, feedback_docs=2)
    assert opt.invoke("solar panels") == fresh.invoke("solar panels") != "solar panels"
    r.delete([ids[0]])  # the document the expansion's terms came from
    rewrite = opt.invoke("solar panels")
    assert not {"convert", "sunlight"} & set(rewrite.split())
    assert rewrite == QueryOptimizer(retriever=r, expansion_terms=2, feedback_docs=2).invoke(
        "solar panels"
    )


def test_recomputed_rewrite_keeps_the_rewards(retriever: HybridRetriever) -> None:
    opt = QueryOptimizer(retriever=retriever, expansion_terms=2)
    assert opt.invoke("wind") != "wind"
    assert opt.feedback("wind", 0.0)  # the expansion did not help
    retriever.add_texts(["Wind farms stand offshore."])
    assert opt.invoke("wind") == "wind"  # recomputed, still the plain variant
    rec = Recorder()
    opt.invoke("wind", {"callbacks": [rec]})
    assert rec.events[-1]["oscar.query_optimizer.history_hit"] is True


def test_history_is_bounded() -> None:
    opt = QueryOptimizer(max_history=3)
    for i in range(10):
        opt.invoke(f"query {i}")
    assert len(opt.history) == 3 and opt.history.lookup("query 9") is not None
    with pytest.raises(ValueError, match="max_history"):
        QueryHistory(0)
    assert normalise_query("a\tb\x00c") == "a bc"


def test_optimizer_in_a_lambda_chain(retriever: HybridRetriever) -> None:
    chain = RunnableLambda(lambda q: q.upper()) | QueryOptimizer(retriever=retriever)
    assert chain.invoke("cats").startswith("CATS")


def test_long_queries_are_not_expanded(retriever: HybridRetriever) -> None:
    opt = QueryOptimizer(retriever=retriever, max_query_terms=2)
    long_query = "why do solar panels convert sunlight well"
    assert opt.invoke(long_query) == long_query
    assert opt.invoke("sunlight") != "sunlight"
    assert (
        QueryOptimizer(retriever=retriever, max_query_terms=None).invoke(long_query) != long_query
    )


def test_sync_search_embeds_on_a_worker_thread(retriever: HybridRetriever) -> None:
    import threading

    seen: list[str] = []

    class ThreadRecording(BagOfWords):
        def embed_query(self, text: str) -> list[float]:
            seen.append(threading.current_thread().name)
            return super().embed_query(text)

    retriever.embeddings = ThreadRecording()
    retriever.invoke("cats")
    assert seen and seen[0].startswith("oscar-retrieval")
    retriever.invoke("cats", dense_weight=0)
    assert len(seen) == 1  # BM25-only never embeds the query


async def test_runs_are_annotated(retriever: HybridRetriever) -> None:
    rec = Recorder()
    retriever.invoke("cats", {"callbacks": [rec]}, fusion="score")
    await retriever.ainvoke("cats", {"callbacks": [rec]}, dense_weight=0)
    assert rec.events[0]["oscar.retrieval.fusion"] == "score"
    assert rec.events[1]["oscar.retrieval.dense_hits"] == 0
    assert rec.events[1]["oscar.retrieval.bm25_hits"] >= 1
    assert rec.events[1]["oscar.retrieval.fusion"] == "zscore"  # the default


def test_zscore_fusion_keeps_a_lone_bm25_match_on_top() -> None:
    class Fixed(Embeddings):
        """Document i is basis vector i; the query leans to the dogs document."""

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[float(i == TEXTS.index(t)) for i in range(6)] for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return [0.9, 1.0, 0.0, 0.0, 0.0, 0.0]

    r = HybridRetriever.from_texts(TEXTS, embeddings=Fixed(), k=2)
    assert r.invoke("purr", bm25_weight=0)[0].page_content.startswith("Dogs")
    # "purr" matches only the cats document and BM25 returned every match, so the
    # others are known to score 0 there: they get that z-score, not the cats one's.
    assert r.invoke("purr")[0].page_content.startswith("Cats")
    assert r.invoke("purr", fusion="score")[0].page_content.startswith("Cats")


class _DeletedAfterFirstLookup(dict[str, Document]):
    """A documents dict where a concurrent delete lands right after the victim's first lookup.

    Whatever the lookup (``in``, ``[]`` or ``get``), the delete runs between it and the
    next one: the interleaving a reader racing ``delete`` can see.
    """

    def __init__(self, retriever: HybridRetriever, victim: str) -> None:
        super().__init__(retriever._docs)
        self.retriever, self.victim = retriever, victim

    def _looked_up(self, key: object) -> None:
        if key == self.victim:
            self.victim = ""  # once: delete() itself looks the id up
            self.retriever.delete([str(key)])

    def __contains__(self, key: object) -> bool:
        present = super().__contains__(key)
        self._looked_up(key)
        return present

    def __getitem__(self, key: str) -> Document:
        doc = super().__getitem__(key)
        self._looked_up(key)
        return doc

    def get(self, key: str, default: Any = None) -> Any:
        doc = super().get(key, default)
        self._looked_up(key)
        return doc


def test_search_racing_a_delete_does_not_fail(retriever: HybridRetriever) -> None:
    before = retriever.invoke("sunlight", bm25_weight=1, dense_weight=0)
    victim = before[0].id
    assert victim is not None
    retriever._docs = _DeletedAfterFirstLookup(retriever, victim)
    # The search is ordered before the delete: it returns what it found, never KeyError.
    assert retriever.invoke("sunlight", bm25_weight=1, dense_weight=0) == before
    assert victim not in retriever._docs and victim not in retriever.bm25


def test_get_by_ids_racing_a_delete(retriever: HybridRetriever) -> None:
    victim = retriever.invoke("cats", k=1)[0].id
    assert victim is not None
    retriever._docs = _DeletedAfterFirstLookup(retriever, victim)
    assert [d.id for d in retriever.get_by_ids([victim])] == [victim]
    assert retriever.get_by_ids([victim]) == []


@pytest.mark.parametrize(
    ("value", "enabled"),
    [
        (False, False),
        (True, True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        (" No ", False),
        (0, False),
        ("true", True),
        ("1", True),
        ("Yes", True),
        (1, True),
    ],
)
def test_optimizer_toggle_parses_config_values(
    retriever: HybridRetriever, value: Any, enabled: bool
) -> None:
    opt = QueryOptimizer(retriever=retriever, expansion_terms=2)
    served = opt.invoke("  sunlight ", {"configurable": {"query_optimizer_enabled": value}})
    assert (served != "  sunlight ") is enabled


@pytest.mark.parametrize("value", ["off", "", "maybe", 2, 0.5, [], "enabled"])
def test_optimizer_toggle_refuses_unclear_values(value: Any) -> None:
    opt = QueryOptimizer()
    with pytest.raises(ValueError, match="query_optimizer_enabled"):
        opt.invoke("q", {"configurable": {"query_optimizer_enabled": value}})


async def test_optimizer_async_expands_off_the_event_loop(
    retriever: HybridRetriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextvars
    import threading

    from oscar_langchain.retrieval import query_optimizer

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    marker.set("caller")
    seen: list[tuple[str, str]] = []
    real = query_optimizer.rm3_expansion

    def spy(*args: Any, **kwargs: Any) -> list[tuple[str, float]]:
        seen.append((threading.current_thread().name, marker.get()))
        return real(*args, **kwargs)

    monkeypatch.setattr(query_optimizer, "rm3_expansion", spy)
    loop_thread = threading.current_thread().name
    sync_opt = QueryOptimizer(retriever=retriever, expansion_terms=2)
    async_opt = QueryOptimizer(retriever=retriever, expansion_terms=2)
    for query in ["wind", " sunlight ", "cats purr"]:
        assert await async_opt.ainvoke(query) == sync_opt.invoke(query)
    async_threads = [name for name, _ in seen[0::2]]
    assert all(name != loop_thread for name in async_threads)  # RM3 ran on a worker...
    assert all(value == "caller" for _, value in seen)  # ...with the caller's context
    assert [name for name, _ in seen[1::2]] == [loop_thread] * 3  # sync: in the caller
    await async_opt.ainvoke("wind")  # a history hit expands nothing
    assert len(seen) == 6


def test_sync_search_embeds_in_the_callers_context(retriever: HybridRetriever) -> None:
    import contextvars

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    seen: list[str] = []

    class ContextRecording(BagOfWords):
        def embed_query(self, text: str) -> list[float]:
            seen.append(marker.get())
            return super().embed_query(text)

    retriever.embeddings = ContextRecording()
    token = marker.set("caller")
    try:
        retriever.invoke("cats")
    finally:
        marker.reset(token)
    assert seen == ["caller"]  # on the oscar-retrieval worker, in a copy of the context
