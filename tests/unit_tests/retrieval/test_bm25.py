"""BM25 core: oracle scores, incremental equivalence, persistence, bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi, BM25Plus

from oscar_langchain.errors import ConfigurationError, RetrievalError
from oscar_langchain.retrieval.bm25 import BM25Index, BM25Params


def _corpus(n: int = 300, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(200)]
    # Zipf-ish: low ids are frequent, so some terms are in > half the docs (negative idf).
    return [
        [words[min(int(rng.paretovariate(1.0)) - 1, 199)] for _ in range(rng.randint(1, 30))]
        for _ in range(n)
    ]


QUERIES = [["w0"], ["w1", "w5", "w5"], ["w3", "w40", "nope"], ["w0", "w1", "w2", "w199"]]


def _ids(n: int, start: int = 0) -> list[str]:
    return [f"d{i}" for i in range(start, start + n)]


def test_okapi_matches_rank_bm25_including_epsilon_floor() -> None:
    docs = _corpus()
    oracle = BM25Okapi(docs)
    assert any(v == oracle.epsilon * oracle.average_idf for v in oracle.idf.values())
    index = BM25Index(BM25Params(variant="okapi"))
    index.add(_ids(len(docs)), docs)
    for q in QUERIES:
        np.testing.assert_allclose(index.get_scores(q), oracle.get_scores(q), atol=1e-6)


def test_bm25plus_matches_rank_bm25() -> None:
    docs = _corpus(seed=1)
    oracle = BM25Plus(docs)
    index = BM25Index(BM25Params(variant="bm25plus"))
    index.add(_ids(len(docs)), docs)
    for q in QUERIES:
        np.testing.assert_allclose(index.get_scores(q), oracle.get_scores(q), atol=1e-6)


def test_lucene_matches_bm25s() -> None:
    bm25s = pytest.importorskip("bm25s")
    docs = _corpus(seed=2)
    ref = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    ref.index(
        bm25s.tokenization.Tokenized(ids=_as_ids(docs), vocab=_vocab(docs)), show_progress=False
    )
    index = BM25Index(BM25Params(variant="lucene"))
    index.add(_ids(len(docs)), docs)
    vocab = _vocab(docs)
    for q in QUERIES:
        expected = ref.get_scores([vocab[t] for t in q if t in vocab])
        np.testing.assert_allclose(index.get_scores(q), expected, rtol=1e-5, atol=1e-5)


def _vocab(docs: list[list[str]]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for d in docs:
        for t in d:
            vocab.setdefault(t, len(vocab))
    return vocab


def _as_ids(docs: list[list[str]]) -> list[list[int]]:
    vocab = _vocab(docs)
    return [[vocab[t] for t in d] for d in docs]


@pytest.mark.parametrize("variant", ["okapi", "lucene", "bm25plus"])
def test_incremental_adds_and_deletes_equal_fresh_build(variant: str) -> None:
    docs = _corpus(400, seed=3)
    ids = _ids(len(docs))
    params = BM25Params(variant=variant)  # type: ignore[arg-type]
    grown = BM25Index(params, compact_ratio=0.9)
    for start in range(0, len(docs), 23):  # many small adds -> several merges
        grown.add(ids[start : start + 23], docs[start : start + 23])
    dead = set(ids[::7]) | {"d5", "d6"}
    grown.delete(sorted(dead))
    grown.add(["d10", "extra"], [["w1", "w1", "w9"], ["w2", "brandnew"]])  # upsert + new
    keep = [(i, d) for i, d in zip(ids, docs, strict=True) if i not in dead and i != "d10"]
    fresh = BM25Index(params)
    fresh.add(
        [i for i, _ in keep] + ["d10", "extra"],
        [d for _, d in keep] + [["w1", "w1", "w9"], ["w2", "brandnew"]],
    )
    assert len(grown) == len(fresh)
    order = {d: n for n, d in enumerate(grown.ids())}
    for q in [*QUERIES, ["brandnew", "w9"]]:
        g = grown.get_scores(q)
        f = fresh.get_scores(q)
        np.testing.assert_allclose(g[[order[d] for d in fresh.ids()]], f, atol=1e-9)
        assert [d for d, _ in grown.search(q, 10)] == [d for d, _ in fresh.search(q, 10)]


def test_compaction_keeps_scores() -> None:
    docs = _corpus(100, seed=4)
    index = BM25Index(compact_ratio=0.25)
    index.add(_ids(100), docs)
    before = dict(index.search(["w3"], 100))
    index.delete(_ids(40))  # crosses the ratio -> compaction
    assert len(index._ids) == 60
    fresh = BM25Index()
    fresh.add(_ids(60, 40), docs[40:])
    assert index.search(["w3"], 5) == fresh.search(["w3"], 5)
    assert before  # the query matched something before deleting


def test_save_load_round_trip(tmp_path: Path) -> None:
    docs = _corpus(150, seed=5)
    index = BM25Index(BM25Params(variant="okapi", k1=1.2))
    index.add(_ids(150), docs)
    index.delete(["d3", "d4"])
    index.save(tmp_path / "idx")
    for mmap in (False, True):
        loaded = BM25Index.load(tmp_path / "idx", mmap=mmap)
        assert loaded.ids() == index.ids() and loaded.params == index.params
        for q in QUERIES:
            assert np.array_equal(loaded.get_scores(q), index.get_scores(q))
        loaded.add(["new"], [["w1", "w2"]])  # a loaded (even memory-mapped) index grows
        loaded.delete(["d7"])
        assert "new" in loaded and "d7" not in loaded


def test_empty_index_save_load_and_search(tmp_path: Path) -> None:
    index = BM25Index()
    assert index.search(["x"], 3) == []
    index.save(tmp_path / "e")
    assert len(BM25Index.load(tmp_path / "e")) == 0


def test_bad_input() -> None:
    index = BM25Index()
    index.add(["a"], [["x"]])
    with pytest.raises(ValueError, match="k must be > 0"):
        index.search(["x"], 0)
    with pytest.raises(RetrievalError, match="unknown document ids"):
        index.delete(["a", "zzz"])
    assert "a" in index  # nothing deleted
    with pytest.raises(ValueError, match="unique"):
        index.add(["b", "b"], [["x"], ["y"]])
    with pytest.raises(ValueError, match="entries"):
        index.add(["b"], [])
    with pytest.raises(RetrievalError, match="unknown document id"):
        index.term_frequencies("zzz")
    assert index.search([], 3) == [] and index.search(["unseen"], 3) == []
    with pytest.raises(ConfigurationError, match="variant"):
        BM25Params(variant="nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="b"):
        BM25Params(b=2)
    with pytest.raises(ConfigurationError, match="compact_ratio"):
        BM25Index(compact_ratio=0)


def _saved(tmp_path: Path) -> Path:
    index = BM25Index()
    index.add(_ids(20), _corpus(20))
    index.save(tmp_path / "idx")
    return tmp_path / "idx"


def test_corrupt_directories_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RetrievalError, match="no index directory"):
        BM25Index.load(tmp_path / "missing")
    path = _saved(tmp_path)
    (path / "fwd_terms.npy").write_bytes(b"garbage")
    with pytest.raises(RetrievalError, match="missing or truncated"):
        BM25Index.load(path)
    path = _saved(tmp_path / "b")
    (path / "manifest.json").unlink()
    with pytest.raises(RetrievalError, match="incomplete save"):
        BM25Index.load(path)
    path = _saved(tmp_path / "c")
    manifest = json.loads((path / "manifest.json").read_text())
    np.save(path / "doc_len.npy", np.zeros(3, np.int64))
    manifest["files"]["doc_len.npy"] = (path / "doc_len.npy").stat().st_size
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RetrievalError, match="disagree"):
        BM25Index.load(path)


def test_failed_save_leaves_previous_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _saved(tmp_path)
    index = BM25Index()
    index.add(["only"], [["x"]])

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("oscar_langchain.retrieval.bm25.write_json", boom)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert len(BM25Index.load(path)) == 20  # old index intact
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temp dir left
    with pytest.raises(OSError, match="disk full"):
        index.save(tmp_path / "fresh")
    with pytest.raises(RetrievalError):
        BM25Index.load(tmp_path / "fresh")


def _tamper(path: Path, name: str, value: object) -> None:
    target = path / name
    if name.endswith(".npy"):
        np.save(target, value)
    else:
        target.write_text(json.dumps(value))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][name] = target.stat().st_size
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("vocab.json", lambda a: [1, 2], "vocab.json"),
        ("ids.json", lambda a: "x", "ids.json"),
        ("fwd_tfs.npy", lambda a: a[:-1], "forward postings"),
        ("fwd_terms.npy", lambda a: a + 10_000, "forward postings"),
        ("fwd_indptr.npy", lambda a: np.r_[0, a[2], a[1], a[3:]], "monotonic"),
        ("csc_indptr.npy", lambda a: a[:-1], "vocabulary"),
        ("csc_rows.npy", lambda a: a[:-1], "wrong length"),
        ("csc_rows.npy", lambda a: a + 10_000, "past the last document"),
    ],
)
def test_inconsistent_arrays_are_refused(
    tmp_path: Path, name: str, make: object, message: str
) -> None:
    path = _saved(tmp_path)
    current = np.load(path / name) if name.endswith(".npy") else None
    _tamper(path, name, make(current))  # type: ignore[operator]
    with pytest.raises(RetrievalError, match=message):
        BM25Index.load(path)


def test_bad_parameters_in_manifest(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["meta"]["params"]["k1"] = -1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RetrievalError, match="bad parameters"):
        BM25Index.load(path)
    manifest["version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RetrievalError, match="format version"):
        BM25Index.load(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(RetrievalError, match="cannot read"):
        BM25Index.load(path)


def test_query_stats_describe_all_live_documents() -> None:
    docs = _corpus(200, seed=5)
    index = BM25Index(compact_ratio=0.9)  # deleted rows stay stored: stats must skip them
    index.add(_ids(200), docs)
    index.delete(_ids(30))
    for q in QUERIES:
        hits = index.query(q, 5)
        scores = index.get_scores(q)  # lucene: the live documents' raw scores
        assert hits.ranking == index.search(q, 5)
        assert hits.stats.mean == pytest.approx(scores.mean(), abs=1e-12)
        assert hits.stats.std == pytest.approx(scores.std(), abs=1e-9)
        assert hits.stats.floor is None  # a truncated list: the floor is its last score
    rare = index.query(["w199"], 50)  # fewer matches than k: the others score exactly 0
    assert 0 < len(rare.ranking) < 50 and rare.stats.floor == 0.0


def _delete_after_snapshot(
    index: BM25Index, monkeypatch: pytest.MonkeyPatch, ids: list[str]
) -> None:
    """Make the next query's snapshot be followed at once by a delete of ``ids``.

    This is the interleaving of a search and a concurrent ``delete`` (which compacts)
    pinned deterministically: the search's snapshot is taken, then the delete runs.
    """
    original = index._snapshot

    def snapshot_then_delete(*args: object, **kwargs: object) -> object:
        taken = original(*args, **kwargs)  # type: ignore[arg-type]
        monkeypatch.setattr(index, "_snapshot", original)
        index.delete(ids)
        return taken

    monkeypatch.setattr(index, "_snapshot", snapshot_then_delete)


def test_filtered_search_racing_a_compacting_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    index = BM25Index()
    index.add(["a", "b", "c", "d"], [["cat"], ["cat"], ["cat"], ["cat"]])
    index.delete(["a"])  # 1 of 4 deleted: no compaction yet
    _delete_after_snapshot(index, monkeypatch, ["b"])  # 2 of 4: compacts to [c, d]
    hits = index.search(["cat"], k=4, allowed_ids={"d"})
    # Positions of the filter must come from the snapshot's generation: "d", never "b".
    assert [doc_id for doc_id, _ in hits] == ["d"]
    assert index.version > 0 and index.ids() == ["c", "d"]


def test_get_scores_racing_a_compacting_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    index = BM25Index()
    index.add(["a", "b", "c", "d"], [["cat"], ["dog"], ["cat"], ["cat", "dog"]])
    index.delete(["a"])
    expected = index.get_scores(["cat"])
    _delete_after_snapshot(index, monkeypatch, ["b"])
    np.testing.assert_allclose(index.get_scores(["cat"]), expected)


def test_query_stats_racing_a_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    index = BM25Index(compact_ratio=1.0)
    index.add(["a", "b", "c", "d"], [["cat"], ["dog"], ["cat", "cat"], ["cat", "dog"]])
    expected = index.query(["cat"], k=2).stats
    _delete_after_snapshot(index, monkeypatch, ["b"])
    assert index.query(["cat"], k=2).stats == expected
