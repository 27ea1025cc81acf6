"""Chunking quality on Chroma's general evaluation set: recall, precision and IoU.

Run from the repository root (the data lives in ``../shared/data/chunking_eval/``):

    python benchmarks/chunking_eval.py                       # offline embeddings
    python benchmarks/chunking_eval.py --embeddings minilm   # all-MiniLM-L6-v2

Each splitter chunks the five corpora; chunks and questions are embedded with the same
embeddings; for each question the chunks of its corpus are ranked by cosine similarity
and taken in order until the same budget of retrieved tokens is reached (the last one
cut to fit). Retrieved and reference excerpts are compared character by character (as
Chroma's implementation does for its "token-level" metrics): recall = |R & E| / |E|,
precision = |R & E| / |R|, IoU = |R & E| / |R | E|, averaged over the 472 questions.
Skips cleanly when the data folder is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._splitter_common import (
    COUNTER,
    DATA,
    CachedEmbeddings,
    Span,
    SplitFn,
    chonkie_semantic,
    embeddings_named,
    lc_semantic,
    ours,
    recursive,
)


def load(data: Path, corpora: list[str] | None) -> tuple[dict[str, str], list[dict]]:
    texts = {
        p.stem: p.read_bytes().decode("utf-8") for p in sorted((data / "corpora").glob("*.md"))
    }
    if corpora:
        texts = {k: v for k, v in texts.items() if k in corpora}
    questions = []
    with (data / "questions.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["corpus_id"] in texts:
                refs = json.loads(row["references"])
                questions.append(
                    {
                        "question": row["question"],
                        "corpus": row["corpus_id"],
                        "refs": [(r["start_index"], r["end_index"]) for r in refs],
                    }
                )
    return texts, questions


def chunk_all(split: SplitFn, texts: dict[str, str]) -> dict[str, list[Span]]:
    out = {}
    for name, text in texts.items():
        spans = split(text)
        for s, e in spans:
            assert 0 <= s < e <= len(text), (name, s, e)
        out[name] = spans
    return out


def mean_tokens(chunks: dict[str, list[Span]], texts: dict[str, str]) -> float:
    counts = [COUNTER.count(texts[k][s:e]) for k, spans in chunks.items() for s, e in spans]
    return float(np.mean(counts))


def eval_inputs(
    data: Path, embeddings: str, corpora: list[str] | None, cache: Path | None = None
) -> tuple[CachedEmbeddings, dict[str, str], list[dict]] | None:
    """The embeddings (cached on disk for MiniLM by default) and the corpora and questions.

    ``None``, with the reason printed, when the data or the embeddings are not available.
    """
    if not (data / "questions.csv").exists():
        print(f"[skip] chunking-eval data not found at {data}")
        return None
    base = embeddings_named(embeddings)
    if base is None:
        return None
    if cache is None and embeddings == "minilm":
        cache = Path("/tmp/oscar_splitter_emb/minilm")
    texts, questions = load(data, corpora)
    return CachedEmbeddings(base, cache), texts, questions


def question_scores(
    chunks: dict[str, list[Span]],
    texts: dict[str, str],
    questions: list[dict],
    emb: CachedEmbeddings,
    budget: int,
) -> dict[str, np.ndarray]:
    """Per-question ``recall``, ``precision`` and ``iou`` (fractions), in question order."""
    per_corpus = {}
    for name, spans in chunks.items():
        contents = [texts[name][s:e] for s, e in spans]
        matrix = np.asarray(emb.embed_documents(contents), dtype=np.float32)
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        per_corpus[name] = (matrix, [COUNTER.count(c) for c in contents])
    recalls, precisions, ious = [], [], []
    for q in questions:
        text = texts[q["corpus"]]
        spans = chunks[q["corpus"]]
        matrix, counts = per_corpus[q["corpus"]]
        qv = np.asarray(emb.embed_query(q["question"]), dtype=np.float32)
        order = np.argsort(-(matrix @ qv), kind="stable")
        retrieved = np.zeros(len(text), dtype=bool)
        left = budget
        for i in order:
            if left <= 0:
                break
            s, e = spans[i]
            if counts[i] > left:  # cut the last chunk to the remaining budget
                e = s + max(1, int((e - s) * left / counts[i]))
            retrieved[s:e] = True
            left -= counts[i]
        relevant = np.zeros(len(text), dtype=bool)
        for s, e in q["refs"]:
            relevant[s:e] = True
        inter = int(np.count_nonzero(retrieved & relevant))
        union = int(np.count_nonzero(retrieved | relevant))
        recalls.append(inter / max(1, int(relevant.sum())))
        precisions.append(inter / max(1, int(retrieved.sum())))
        ious.append(inter / max(1, union))
    return {
        "recall": np.asarray(recalls),
        "precision": np.asarray(precisions),
        "iou": np.asarray(ious),
    }


def score(
    chunks: dict[str, list[Span]],
    texts: dict[str, str],
    questions: list[dict],
    emb: CachedEmbeddings,
    budget: int,
) -> dict[str, float]:
    per_q = question_scores(chunks, texts, questions, emb, budget)
    out = {k: 100 * float(np.mean(v)) for k, v in per_q.items()}
    names = np.asarray([q["corpus"] for q in questions])
    for name in chunks:  # per-corpus breakdown: "recall/<corpus>", "iou/<corpus>"
        mask = names == name
        if mask.any():
            out[f"recall/{name}"] = 100 * float(np.mean(per_q["recall"][mask]))
            out[f"iou/{name}"] = 100 * float(np.mean(per_q["iou"][mask]))
    return out


def matched(
    make: Callable[[int], SplitFn],
    texts: dict[str, str],
    target: int,
    lo: int,
    hi: int,
    steps: int,
    tolerance: float = 0.03,
) -> tuple[int, dict[str, list[Span]], float]:
    """Bisect an integer knob so that the mean chunk size is within ``tolerance`` of ``target``."""
    best = None
    for _ in range(steps):
        mid = (lo + hi) // 2
        chunks = chunk_all(make(mid), texts)
        size = mean_tokens(chunks, texts)
        if best is None or abs(size - target) < abs(best[2] - target):
            best = (mid, chunks, size)
        if size < target:
            lo = mid + 1
        else:
            hi = mid - 1
        if lo > hi or abs(size - target) <= tolerance * target:
            break
    assert best is not None
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", choices=["offline", "minilm"], default="offline")
    parser.add_argument("--budget", type=int, default=1000, help="retrieved tokens per question")
    parser.add_argument("--targets", type=int, nargs="*", default=[200, 400])
    parser.add_argument("--corpora", nargs="*", default=None, help="subset of corpus ids")
    parser.add_argument("--only", nargs="*", default=None, help="subset of splitters")
    parser.add_argument("--steps", type=int, default=12, help="bisection steps for matched sizes")
    parser.add_argument(
        "--tolerance", type=float, default=0.005, help="matched mean size within this fraction"
    )
    parser.add_argument(
        "--ours-option",
        nargs="*",
        default=[],
        metavar="FIELD=JSON",
        help="extra SemanticTextSplitter settings for our rows, e.g. baseline=0.05",
    )
    parser.add_argument(
        "--spread",
        type=int,
        default=2,
        help="matched rows average the knob values within +-spread of the match (0: one value)",
    )
    parser.add_argument("--per-corpus", action="store_true", help="also print recall per corpus")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="on-disk embedding cache (default for minilm: /tmp/oscar_splitter_emb/minilm)",
    )
    args = parser.parse_args()
    inputs = eval_inputs(args.data, args.embeddings, args.corpora, args.cache)
    if inputs is None:
        return
    emb, texts, questions = inputs
    extra = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.ours_option)}
    print(
        f"corpora: {', '.join(texts)} ({sum(map(len, texts.values())):,} chars), "
        f"{len(questions)} questions, embeddings={args.embeddings}, budget={args.budget} tokens"
    )

    rows: list[tuple[str, str, float, dict[str, float], float]] = []

    def run(name: str, setting: str, chunks: dict[str, list[Span]], seconds: float) -> None:
        size = mean_tokens(chunks, texts)
        metrics = score(chunks, texts, questions, emb, args.budget)
        emb.save()
        report(name, setting, size, metrics, seconds)

    def report(
        name: str, setting: str, size: float, metrics: dict[str, float], seconds: float
    ) -> None:
        rows.append((name, setting, size, metrics, seconds))
        print(
            f"{name:<28} {setting:<26} mean {size:6.1f} tok  "
            f"recall {metrics['recall']:5.1f}  precision {metrics['precision']:5.2f}  "
            f"IoU {metrics['iou']:5.2f}  ({seconds:.0f}s)",
            flush=True,
        )
        if args.per_corpus:
            parts = [
                f"{k.split('/')[1]} {metrics[k]:.1f}/{metrics['iou/' + k.split('/')[1]]:.2f}"
                for k in metrics
                if k.startswith("recall/")
            ]
            print("    recall/IoU per corpus: " + ", ".join(parts), flush=True)

    def want(name: str) -> bool:
        return args.only is None or name in args.only

    recommended: list[tuple[str, str, Callable[[], SplitFn]]] = [
        ("ours", "defaults (max 400, optimal)", lambda: ours(emb, **extra)),
        ("recursive", "1000 chars, overlap 200", lambda: recursive(1000, 200, tokens=False)),
        ("lc_semantic", "defaults (percentile 95)", lambda: lc_semantic(emb)),
        ("chonkie", "defaults (threshold 0.8)", lambda: chonkie_semantic(emb)),
    ]
    for name, setting, make in recommended:
        if want(name):
            t0 = time.perf_counter()
            chunks = chunk_all(make(), texts)
            run(name, setting, chunks, time.perf_counter() - t0)

    def centre(make: Callable[[int], SplitFn], t: int, lo: int, hi: int) -> Callable[[], int]:
        return lambda: matched(make, texts, t, lo, hi, args.steps, args.tolerance)[0]

    def knobs_for(t: int) -> list[tuple[str, str, Callable[[int], SplitFn], Callable[[], int]]]:
        def mine(k: int) -> SplitFn:
            return ours(emb, max_tokens=k, **extra)

        def rec(k: int) -> SplitFn:
            return recursive(k, 0, tokens=True)

        def chonk(k: int) -> SplitFn:
            return chonkie_semantic(emb, chunk_size=2 * t, threshold=1 - k / 1000)

        return [
            ("ours", "max_tokens", mine, centre(mine, t, t, 3 * t)),
            ("recursive", "chunk_size", rec, centre(rec, t, t, 2 * t)),
            (
                "lc_semantic",
                "number_of_chunks=tokens/k, k",
                lambda k: lc_semantic(emb, k),
                lambda: t,
            ),
            (
                "chonkie",
                f"chunk_size={2 * t}, threshold=1-k/1000, k",
                chonk,
                centre(chonk, t, 1, 999),
            ),
        ]

    for target in args.targets:
        for name, knob, make, find in knobs_for(target):
            if not want(name):
                continue
            t0 = time.perf_counter()
            value = find()
            values = [value + d for d in range(-args.spread, args.spread + 1)]
            found = [chunk_all(make(v), texts) for v in values]
            sizes = [mean_tokens(c, texts) for c in found]
            scored = [score(c, texts, questions, emb, args.budget) for c in found]
            emb.save()
            metrics = {k: float(np.mean([m[k] for m in scored])) for k in scored[0]}
            recalls = [m["recall"] for m in scored]
            setting = f"~{target} tok: {knob}={value}"
            if args.spread:
                setting = (
                    f"~{target} tok: {knob}={value}±{args.spread} "
                    f"(recall {min(recalls):.1f}-{max(recalls):.1f})"
                )
            report(name, setting, float(np.mean(sizes)), metrics, time.perf_counter() - t0)

    print("\n| splitter | setting | mean tokens | recall | precision | IoU |")
    print("|---|---|---:|---:|---:|---:|")
    for name, setting, size, m, _ in rows:
        metrics = f"{m['recall']:.1f} | {m['precision']:.2f} | {m['iou']:.2f}"
        print(f"| {name} | {setting} | {size:.0f} | {metrics} |")


if __name__ == "__main__":
    main()
