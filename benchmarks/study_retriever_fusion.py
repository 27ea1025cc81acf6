"""Study: which dense side and which fusion make hybrid beat BM25 on chunking_eval?

    python benchmarks/study_retriever_fusion.py [--minilm-cache /tmp/oscar_bench_cache]

Every question's scores against every chunk are computed once per side; rankings are
then the top ``--fetch`` of each side (BM25: matching chunks only) and are fused with
oscar's own ``score_fusion`` / ``zscore_fusion`` / ``weighted_rrf``, exactly as
``HybridRetriever`` does, with equal weights (nothing is fitted to the questions).
Dense sides: the default ``OfflineEmbeddings`` (hashed words + char n-grams), two
corpus-fitted TF-IDF cosines (char 3-5-grams, word 1-2-grams: strong lexical
baselines), LSA (256-d TruncatedSVD) of the OfflineEmbeddings features fitted on the
corpus, and all-MiniLM-L6-v2 when a ``bench_retriever.py --cache-dir`` index exists.
Differences to BM25-only come with a paired bootstrap 95% interval over questions.

``--variants`` instead compares z-score fusion variants for the OfflineEmbeddings and
MiniLM sides (equal weights unless stated): ``fetch_k`` 50/100/200, the exact z-score
sum (each document's true score on both sides instead of the missing side's floor),
median/MAD statistics for the dense side, BM25 statistics over matching chunks only.
"""
# ruff: noqa: E402 - BLAS thread settings must precede the numpy import

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_retriever import chunk, load_eval, metrics

from oscar_langchain.embeddings import OfflineEmbeddings
from oscar_langchain.retrieval import BM25Index, HybridRetriever
from oscar_langchain.retrieval.fusion import (
    ScoreStats,
    score_fusion,
    weighted_rrf,
    zscore_fusion,
)
from oscar_langchain.retrieval.tokenize import Tokenizer

Matrix = np.ndarray[Any, Any]


def unit(x: Matrix) -> Matrix:
    out: Matrix = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def dense_sides(texts: list[str], questions: list[str], cache: Path | None) -> dict[str, Matrix]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.utils.extmath import randomized_svd

    emb = OfflineEmbeddings()
    docs, qs = emb.embed_array(texts), emb.embed_array(questions)
    sides = {"OfflineEmbeddings (default)": qs @ docs.T}
    for name, options in {
        "TF-IDF char 3-5-grams (corpus-fitted)": {"analyzer": "char_wb", "ngram_range": (3, 5)},
        "TF-IDF word 1-2-grams (corpus-fitted)": {
            "analyzer": "word",
            "ngram_range": (1, 2),
            "stop_words": "english",
        },
    }.items():
        vec = TfidfVectorizer(sublinear_tf=True, dtype=np.float32, **options).fit(texts)  # type: ignore[arg-type]
        sides[name] = (vec.transform(questions) @ vec.transform(texts).T).toarray()
    _, _, vt = randomized_svd(docs, 256, random_state=0)
    sides["LSA-256 of OfflineEmbeddings (corpus-fitted)"] = unit(qs @ vt.T) @ unit(docs @ vt.T).T
    saved = cache / "all-MiniLM-L6-v2-800" if cache else None
    if saved is not None and saved.exists():
        from bench_retriever import MiniLMEmbeddings

        model = MiniLMEmbeddings()
        columns = HybridRetriever.load(saved, embeddings=model)._dense._columns
        assert columns is not None
        q = np.asarray(model.embed_documents(questions), np.float32)
        sides["all-MiniLM-L6-v2"] = unit(q) @ columns.view
    return sides


def ranking(scores: Matrix, ids: list[str], fetch: int, matches_only: bool) -> tuple[Any, Any]:
    cand = np.flatnonzero(scores) if matches_only else np.arange(len(scores))
    if len(cand) > fetch:
        cand = cand[np.argpartition(-scores[cand], fetch - 1)[:fetch]]
    cand = cand[np.argsort(-scores[cand], kind="stable")]
    floor = 0.0 if matches_only and len(cand) < fetch else None
    stats = ScoreStats(*ScoreStats.of(scores)[:2], floor=floor)
    return [(ids[i], float(scores[i])) for i in cand], stats


def evaluate(rankings: list[Any], relevant: list[set[str]]) -> Matrix:
    """Per-question (recall@5, nDCG@10)."""
    return np.array(
        [metrics([d for d, _ in r], rel) for r, rel in zip(rankings, relevant, strict=True)]
    )


def zscores(scores: Matrix, stats: str = "all") -> Matrix:
    """Z-scores of one query's scores: over all chunks, robust (median/MAD) or matching."""
    values = scores[scores > 0] if stats == "matching" else scores
    if stats == "robust":
        centre = float(np.median(values))
        spread = float(np.median(np.abs(values - centre))) * 1.4826
    else:
        centre = float(values.mean()) if len(values) else 0.0
        spread = float(values.std()) if len(values) else 0.0
    out: Matrix = (scores - centre) / spread if spread > 0 else np.zeros_like(scores)
    return out


def variants(
    bm25_scores: Matrix, sides: dict[str, Matrix], ids: list[str], relevant: list[set[str]]
) -> None:
    """Z-score fusion variants against BM25-only, with paired bootstrap intervals."""
    rng = np.random.default_rng(0)
    resample = rng.integers(0, len(relevant), (5000, len(relevant)))
    base = evaluate([ranking(b, ids, 50, True)[0] for b in bm25_scores], relevant)

    def top(z: Matrix) -> list[tuple[str, float]]:
        return [(ids[i], float(z[i])) for i in np.argsort(-z, kind="stable")[:10]]

    print("| dense side | variant | hybrid | minus BM25: recall@5 | nDCG@10 |")
    print("|---|---|---|---|---|")
    for name, dense_scores in sides.items():
        pairs = list(zip(bm25_scores, dense_scores, strict=True))
        found: dict[str, list[Any]] = {}
        for fetch in (50, 100, 200):
            label = f"floor for missing, fetch_k {fetch}" + (" (default)" if fetch == 50 else "")
            found[label] = []
            for b, d in pairs:
                (rb, sb), (rd, sd) = ranking(b, ids, fetch, True), ranking(d, ids, fetch, False)
                found[label].append(zscore_fusion([rb, rd], [1.0, 1.0], [sb, sd]))
        found["exact z-score sum"] = [top(zscores(b) + zscores(d)) for b, d in pairs]
        found["exact, dense median/MAD"] = [
            top(zscores(b) + zscores(d, "robust")) for b, d in pairs
        ]
        found["exact, BM25 stats over matching chunks"] = [
            top(zscores(b, "matching") + zscores(d)) for b, d in pairs
        ]
        found["exact, dense weight 0.5"] = [top(zscores(b) + 0.5 * zscores(d)) for b, d in pairs]
        for label, rankings in found.items():
            hybrid = evaluate(rankings, relevant)
            diff = hybrid - base
            low, high = np.percentile(diff[resample].mean(axis=1), [2.5, 97.5], axis=0)
            cells = [f"{diff[:, i].mean():+.3f} [{low[i]:+.3f}, {high[i]:+.3f}]" for i in (0, 1)]
            print(
                f"| {name} | {label} | {hybrid[:, 0].mean():.3f} / {hybrid[:, 1].mean():.3f} | "
                + " | ".join(cells)
                + " |"
            )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunk-size", type=int, default=800)
    parser.add_argument("--fetch", type=int, default=50)
    parser.add_argument("--minilm-cache", type=Path, default=None)
    parser.add_argument("--variants", action="store_true", help="z-score fusion variants")
    args = parser.parse_args()
    corpora, rows = load_eval()
    chunks = chunk(corpora, args.chunk_size)
    ids = [f"{c}:{s}" for c, s, _, _ in chunks]
    texts = [c[3] for c in chunks]
    questions = [r["question"] for r in rows]
    relevant = [
        {
            i
            for i, (c, s, e, _) in zip(ids, chunks, strict=True)
            if c == row["corpus"]
            and any(s < r["end_index"] and r["start_index"] < e for r in row["refs"])
        }
        for row in rows
    ]
    tok = Tokenizer()
    index = BM25Index()
    index.add(ids, tok.many(texts))
    bm25 = [ranking(index.get_scores(tok(q)), ids, args.fetch, True) for q in questions]
    if args.variants:
        sides = dense_sides(texts, questions, args.minilm_cache)
        keep = ("OfflineEmbeddings (default)", "all-MiniLM-L6-v2")
        bm25_scores = np.array([index.get_scores(tok(q)) for q in questions])
        variants(bm25_scores, {k: v for k, v in sides.items() if k in keep}, ids, relevant)
        return 0
    base = evaluate([r for r, _ in bm25], relevant)
    rng = np.random.default_rng(0)
    resample = rng.integers(0, len(questions), (5000, len(questions)))
    print(f"{len(chunks)} chunks, {len(questions)} questions, fetch {args.fetch}, equal weights")
    print(f"BM25-only: recall@5 {base[:, 0].mean():.3f}, nDCG@10 {base[:, 1].mean():.3f}\n")
    print("| dense side | dense-only | fusion | hybrid | minus BM25: recall@5 | nDCG@10 |")
    print("|---|---|---|---|---|---|")
    for name, scores in dense_sides(texts, questions, args.minilm_cache).items():
        dense = [ranking(s, ids, args.fetch, False) for s in scores]
        only = evaluate([r for r, _ in dense], relevant)
        fusions = {
            "z-score": lambda b, d: zscore_fusion([b[0], d[0]], [1.0, 1.0], [b[1], d[1]]),
            "min-max": lambda b, d: score_fusion([b[0], d[0]], [1.0, 1.0]),
            "RRF": lambda b, d: weighted_rrf([b[0], d[0]], [1.0, 1.0]),
        }
        for label, fuse in fusions.items():
            hybrid = evaluate([fuse(b, d) for b, d in zip(bm25, dense, strict=True)], relevant)
            diff = hybrid - base
            low, high = np.percentile(diff[resample].mean(axis=1), [2.5, 97.5], axis=0)
            cells = [f"{diff[:, i].mean():+.3f} [{low[i]:+.3f}, {high[i]:+.3f}]" for i in (0, 1)]
            print(
                f"| {name} | {only[:, 0].mean():.3f} / {only[:, 1].mean():.3f} | {label} "
                f"| {hybrid[:, 0].mean():.3f} / {hybrid[:, 1].mean():.3f} | "
                + " | ".join(cells)
                + " |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
