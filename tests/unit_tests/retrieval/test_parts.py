"""Tokenizer, dense index, fusion and persistence helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oscar_langchain.errors import ConfigurationError, RetrievalError
from oscar_langchain.retrieval._buffer import Buffer, ColumnBuffer
from oscar_langchain.retrieval.dense import DenseIndex, _gather_pays, cosines, gathered_product
from oscar_langchain.retrieval.fusion import (
    ScoreStats,
    fuse,
    score_fusion,
    weighted_rrf,
    zscore_fusion,
)
from oscar_langchain.retrieval.persist import (
    atomic_directory,
    read_manifest,
    write_json,
    write_manifest,
)
from oscar_langchain.retrieval.tokenize import Tokenizer, light_stem


def test_tokenizer_switches() -> None:
    text = "The Queries were RUNNING; boxes, classes & glass!"
    assert Tokenizer()(text) == ["query", "running", "boxe", "classe", "glass"]
    assert Tokenizer(stem=False, stopwords=None, lowercase=False)(text)[:2] == ["The", "Queries"]
    assert Tokenizer(min_length=6)(text) == ["query", "running", "classe"]
    config = Tokenizer(stem=False).to_config()
    assert Tokenizer.from_config(config) == Tokenizer(stem=False)
    assert Tokenizer.from_config(Tokenizer(stopwords=None).to_config()).stopwords is None
    assert light_stem("bus") == "bus" and light_stem("toes") == "toe"
    with pytest.raises(ConfigurationError, match="min_length"):
        Tokenizer(min_length=0)


def test_buffer_grows_and_copies_read_only() -> None:
    frozen = np.arange(3)
    frozen.setflags(write=False)
    buf = Buffer.wrap(frozen)
    buf.set(0, 9)
    buf.extend([5])
    assert buf.view.tolist() == [9, 1, 2, 5] and frozen.tolist() == [0, 1, 2]
    two_d = Buffer(np.float32, 2)
    two_d.extend([[1, 2], [3, 4]])
    assert two_d.view.shape == (2, 2) and len(two_d) == 2


def test_column_buffer_grows_and_copies_read_only() -> None:
    frozen = np.arange(6, dtype=np.float32).reshape(2, 3)
    frozen.setflags(write=False)
    buf = ColumnBuffer.wrap(frozen)
    buf.extend([[9.0], [8.0]])
    assert buf.view.tolist() == [[0, 1, 2, 9], [3, 4, 5, 8]] and len(buf) == 4
    assert frozen.tolist() == [[0, 1, 2], [3, 4, 5]]
    grown = ColumnBuffer(np.float32, 2)
    for i in range(40):  # past several doublings
        grown.extend(np.full((2, 1), i, np.float32))
    assert grown.view.shape == (2, 40) and grown.view[1].tolist() == list(range(40))
    assert grown.view[0].flags.c_contiguous  # a row is what a sparse query gathers


def _sparse(rng: np.random.Generator, dim: int, share: float) -> np.ndarray:
    query = np.zeros(dim, np.float32)
    nonzero = rng.choice(dim, max(1, int(share * dim)), replace=False)
    query[nonzero] = rng.random(len(nonzero)).astype(np.float32)
    return query / np.linalg.norm(query)


def test_cosines_gathered_rows_equal_the_full_product() -> None:
    rng = np.random.default_rng(3)
    unit = rng.normal(size=(256, 5000)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=0)  # cosines, as the index stores them
    buf = ColumnBuffer(np.float32, 256)
    buf.extend(unit[:, :3000])
    buf.extend(unit[:, 3000:])  # capacity > n: a strided view
    columns = buf.view
    assert not columns.flags.c_contiguous
    exact = columns.astype(np.float64)
    sparse_q = _sparse(rng, 256, 0.12)
    dense_q = rng.normal(size=256).astype(np.float32)
    dense_q /= np.linalg.norm(dense_q)
    assert _gather_pays(int(np.count_nonzero(sparse_q)), 256, 5000)
    assert not _gather_pays(256, 256, 5000)  # a dense (e.g. MiniLM) query: one BLAS call
    assert not _gather_pays(10, 256, 100)  # a small matrix sits in cache: full product
    for q in (sparse_q, dense_q):
        want = q.astype(np.float64) @ exact
        np.testing.assert_allclose(cosines(columns, q), want, atol=1e-5)
        nonzero = np.flatnonzero(q)
        np.testing.assert_allclose(gathered_product(columns, nonzero, q[nonzero]), want, atol=1e-5)
    frozen = np.ascontiguousarray(columns)
    frozen.setflags(write=False)  # as a memory-mapped index is
    np.testing.assert_allclose(
        cosines(frozen, sparse_q), sparse_q.astype(np.float64) @ exact, atol=1e-5
    )
    assert cosines(columns, np.zeros(256, np.float32)).tolist() == [0.0] * 5000


def test_dense_sparse_queries_exact_through_add_delete_save_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    dim = 128
    vectors = np.abs(rng.normal(size=(3000, dim))).astype(np.float32)
    ids = [f"d{i}" for i in range(3000)]
    index = DenseIndex()
    for start in range(0, 3000, 700):  # several adds: the column buffer grows
        index.add(ids[start : start + 700], vectors[start : start + 700])
    index.delete(ids[100:400])  # 10%: masked, not compacted
    index.add(["d5"], [vectors[7]])  # upsert
    stored = {d: vectors[i] for i, d in enumerate(ids) if not 100 <= i < 400}
    stored["d5"] = vectors[7]
    names = list(stored)
    unit = np.array([stored[d] for d in names], np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)

    def check(idx: DenseIndex, q: np.ndarray) -> None:
        assert _gather_pays(int(np.count_nonzero(q)), dim, len(idx._ids))
        want = unit @ q.astype(np.float64)
        top = np.argsort(-want, kind="stable")[:10]
        hits = idx.query(q, 10)
        assert [d for d, _ in hits.ranking] == [names[i] for i in top]
        np.testing.assert_allclose([s for _, s in hits.ranking], want[top], atol=1e-5)
        assert hits.stats.mean == pytest.approx(want.mean(), abs=1e-6)
        assert hits.stats.std == pytest.approx(want.std(), abs=1e-6)

    queries = [_sparse(rng, dim, 0.1) for _ in range(5)]
    for q in queries:
        check(index, q)
    index.save(tmp_path / "d")
    for mmap in (False, True):
        loaded = DenseIndex.load(tmp_path / "d", mmap=mmap)
        for q in queries:
            check(loaded, q)
    index.compact()
    check(index, queries[0])


def test_dense_loads_the_row_layout_of_earlier_saves(tmp_path: Path) -> None:
    rows = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    old = tmp_path / "old"
    old.mkdir()
    np.save(old / "vectors.npy", rows, allow_pickle=False)
    write_json(old / "ids.json", ["a", "b"])
    write_manifest(old, "oscar-dense", {"dimension": 2, "compact_ratio": 0.25})
    loaded = DenseIndex.load(old, mmap=True)
    assert loaded.search([0.0, 1.0], 2) == [("b", pytest.approx(0.8)), ("a", 0.0)]
    loaded.add(["c"], [[0.0, 2.0]])
    assert loaded.search([0.0, 1.0], 1) == [("c", 1.0)]
    odd = tmp_path / "odd"
    odd.mkdir()
    write_json(odd / "ids.json", [])
    write_manifest(odd, "oscar-dense", {"layout": "diagonal"})
    with pytest.raises(RetrievalError, match="unknown layout"):
        DenseIndex.load(odd)
    for name, ids, error in (
        ("short", ["a", "b"], "vectors disagree"),
        ("badids", ["a", 1, "c"], "not a list of str"),
    ):
        bad = tmp_path / name
        bad.mkdir()
        np.save(bad / "columns.npy", np.eye(2, 3, dtype=np.float32), allow_pickle=False)
        write_json(bad / "ids.json", ids)
        write_manifest(bad, "oscar-dense", {"layout": "columns"})
        with pytest.raises(RetrievalError, match=error):
            DenseIndex.load(bad)


def test_dense_search_delete_upsert_and_compact() -> None:
    index = DenseIndex(compact_ratio=0.5)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    ids = [f"v{i}" for i in range(50)]
    index.add(ids, vectors)
    top = index.search(vectors[7], k=3)
    assert top[0][0] == "v7" and top[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [d for d, _ in index.search(vectors[7], k=3, allowed_ids={"v1", "v2"})] in (
        ["v1", "v2"],
        ["v2", "v1"],
    )
    index.delete(ids[:30])  # > half dead -> compacted
    assert len(index) == 20 and len(index._ids) == 20
    assert all(d not in ids[:30] for d, _ in index.search(vectors[7], k=50))
    index.add(["v40"], [vectors[0]])  # upsert
    assert index.search(vectors[0], k=1)[0][0] == "v40"
    with pytest.raises(RetrievalError, match="unknown"):
        index.delete(["nope"])
    with pytest.raises(RetrievalError, match="dimension"):
        index.search([1.0, 2.0], k=1)
    with pytest.raises(ValueError, match="dimension"):
        index.add(["x"], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="k must be"):
        index.search(vectors[0], k=0)
    with pytest.raises(ValueError, match="unique"):
        index.add(["a", "a"], vectors[:2])
    with pytest.raises(ValueError, match="entries"):
        index.add(["a"], vectors[:2])
    assert DenseIndex().search([1.0], k=2) == []


def test_dense_mmr_diversifies() -> None:
    index = DenseIndex()
    index.add(["a", "a2", "b"], [[1.0, 0.0], [0.99, 0.01], [0.6, 0.8]])
    assert [d for d, _ in index.search_mmr([1.0, 0.0], k=2, lambda_mult=1.0)] == ["a", "a2"]
    assert [d for d, _ in index.search_mmr([1.0, 0.0], k=2, lambda_mult=0.3)] == ["a", "b"]
    with pytest.raises(ConfigurationError, match="lambda_mult"):
        index.search_mmr([1.0, 0.0], k=2, lambda_mult=2)
    with pytest.raises(ValueError, match="k must"):
        index.search_mmr([1.0, 0.0], k=0)


def test_dense_query_stats_and_mmr() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8))
    index = DenseIndex(compact_ratio=1.0)  # deleted rows stay stored: stats must skip them
    index.add([str(i) for i in range(40)], vectors)
    index.delete([str(i) for i in range(10)])
    q = rng.normal(size=8)
    unit = vectors[10:] / np.linalg.norm(vectors[10:], axis=1, keepdims=True)
    cosines = unit @ (q / np.linalg.norm(q))
    hits = index.query(q, 3)
    assert hits.ranking == index.search(q, 3)
    assert hits.stats.mean == pytest.approx(cosines.mean(), abs=1e-6)
    assert hits.stats.std == pytest.approx(cosines.std(), abs=1e-6)
    mmr = index.query(q, 3, mmr_lambda=0.3, fetch_k=10)
    assert mmr.ranking == index.search_mmr(q, 3, fetch_k=10, lambda_mult=0.3)
    assert mmr.stats == hits.stats
    assert index.query(q, 3, with_stats=False).stats == (0.0, 0.0, None)
    assert DenseIndex().query(q, 3) == ([], (0.0, 0.0, None))


def test_dense_save_load(tmp_path: Path) -> None:
    index = DenseIndex()
    index.add(["a", "b", "c"], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    index.delete(["b"])
    index.save(tmp_path / "d")
    for mmap in (False, True):
        loaded = DenseIndex.load(tmp_path / "d", mmap=mmap)
        assert loaded.search([1.0, 0.2], 3) == index.search([1.0, 0.2], 3)
        loaded.add(["z"], [[0.0, 1.0]])
        assert loaded.search([0.0, 1.0], 1)[0][0] == "z"
    (tmp_path / "d" / "ids.json").write_text('["a", "c"]' + " " * 0)
    DenseIndex.load(tmp_path / "d")  # same size, still consistent
    (tmp_path / "d" / "ids.json").write_text('["a", 1]')
    with pytest.raises(RetrievalError):
        DenseIndex.load(tmp_path / "d")
    DenseIndex().save(tmp_path / "empty")
    assert len(DenseIndex.load(tmp_path / "empty")) == 0


def test_fusion() -> None:
    a = [("x", 3.0), ("y", 2.0), ("z", 1.0)]
    b = [("z", 0.9), ("w", 0.1)]
    rrf = weighted_rrf([a, b], [1.0, 1.0], c=0)
    assert rrf[0] == ("z", pytest.approx(1 / 3 + 1.0))
    assert [d for d, _ in weighted_rrf([a, b], [1.0, 0.0])] == ["x", "y", "z"]
    assert score_fusion([a, b], [1.0, 1.0])[:2] == [("x", 1.0), ("z", 1.0)]
    assert score_fusion([[("only", 5.0)], []], [1.0, 1.0]) == [("only", 1.0)]
    assert fuse("score", [a], [1.0])[0][0] == "x"
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("max", [a], [1.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weights"):
        weighted_rrf([a], [1.0, 2.0])
    with pytest.raises(ValueError, match=">= 0"):
        score_fusion([a], [-1.0])
    with pytest.raises(ValueError, match="c must"):
        weighted_rrf([a], [1.0], c=-1)


def test_zscore_fusion() -> None:
    a = [("x", 9.0), ("y", 5.0)]
    b = [("y", 0.8), ("z", 0.7)]
    stats = [ScoreStats(1.0, 2.0), ScoreStats(0.5, 0.1)]
    # x: 4 + dense floor 2; y: 2 + 3; z: bm25 floor 2 + 2.
    fused = zscore_fusion([a, b], [1.0, 1.0], stats)
    assert fused == [
        ("x", pytest.approx(6.0)),
        ("y", pytest.approx(5.0)),
        ("z", pytest.approx(4.0)),
    ]
    # A known floor (every BM25 match returned, the rest score 0) replaces the last score.
    known = zscore_fusion([a, b], [1.0, 1.0], [ScoreStats(1.0, 2.0, floor=0.0), stats[1]])
    assert dict(known)["z"] == pytest.approx(-0.5 + 2.0)
    assert [d for d, _ in zscore_fusion([a, b], [1.0, 0.0], stats)] == ["x", "y", "z"]
    flat = zscore_fusion([a, b], [1.0, 1.0], [ScoreStats(1.0, 0.0), stats[1]])  # no spread
    assert [d for d, _ in flat] == ["y", "x", "z"]  # x gets the dense floor: ties z, seen first
    assert fuse("zscore", [a, b], [1.0, 1.0], stats=stats) == fused
    assert ScoreStats.of(np.array([1.0, 3.0]), n=4)[:2] == (1.0, pytest.approx(1.5**0.5))
    assert ScoreStats.of(np.zeros(0)) == (0.0, 0.0, None)
    with pytest.raises(ValueError, match="needs the score stats"):
        fuse("zscore", [a], [1.0])
    with pytest.raises(ValueError, match="score stats"):
        zscore_fusion([a, b], [1.0, 1.0], stats[:1])


def test_atomic_directory_requires_manifest(tmp_path: Path) -> None:
    with pytest.raises(RetrievalError, match="no manifest"), atomic_directory(tmp_path / "x"):
        pass
    assert list(tmp_path.iterdir()) == []


def _record_durability(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record ``("fsync", path)`` and ``("rename", destination)`` in call order."""
    events: list[tuple[str, str]] = []
    paths: dict[int, str] = {}
    real_open, real_fsync, real_rename = os.open, os.fsync, os.rename

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        paths[fd] = str(path)
        return fd

    def fsync(fd: int) -> None:
        events.append(("fsync", paths.get(fd, f"fd {fd}")))
        real_fsync(fd)

    def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        events.append(("rename", str(dst)))
        real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    return events


@pytest.mark.skipif(os.name != "posix", reason="directory fsync is POSIX")
@pytest.mark.parametrize("replace", [False, True])
def test_atomic_directory_is_durable_before_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, replace: bool
) -> None:
    target = tmp_path / "idx"
    if replace:
        with atomic_directory(target) as tmp:
            write_manifest(tmp, "demo", {"n": 0})
    events = _record_durability(monkeypatch)
    with atomic_directory(target) as tmp:
        (tmp / "sub").mkdir()
        write_json(tmp / "sub" / "a.json", [1, 2])
        write_json(tmp / "b.json", {"x": 1})
        write_manifest(tmp, "demo", {"n": 2})
    into_place = events.index(("rename", str(target)))
    synced_before = {Path(p).relative_to(tmp) for kind, p in events[:into_place] if kind == "fsync"}
    # Every file and directory of the new index is on disk before it is renamed in...
    assert synced_before == {
        Path("sub/a.json"),
        Path("b.json"),
        Path("manifest.json"),
        Path("sub"),
        Path("."),
    }
    # ...the rename is the last change, and the parent's fsync makes the rename durable.
    assert events[into_place + 1 :] == [("fsync", str(tmp_path))]
    assert [kind for kind, _ in events].count("rename") == (2 if replace else 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    assert read_manifest(target, "demo")["meta"] == {"n": 2}
