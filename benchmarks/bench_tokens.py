"""TokenCounter throughput vs raw tiktoken on ~10 MB of text, side by side in one run.

Run: .venv/bin/python benchmarks/bench_tokens.py [--mb 10] [--repeat 3]
The reference is a tiktoken.Encoding built directly by tiktoken from the same BPE file
(raw ``encode_ordinary``; ``encode`` with its special-token scan is shown too).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import tiktoken

from oscar_langchain.tokens import ENCODINGS, TokenCounter, _shipped_file, load_bpe_ranks

SHARED = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chunking_eval" / "corpora"
)


def corpus(mb: float) -> str:
    if SHARED.is_dir():
        base = "\n\n".join(p.read_text("utf-8") for p in sorted(SHARED.glob("*.md")))
    else:  # pragma: no cover - shared/ absent: a synthetic mix of prose, numbers and code
        print("(../shared absent: using synthetic text)")
        base = (
            "The quick brown fox jumps over the lazy dog 1234 times. "
            "def f(x):\n    return x ** 2\n Ünïcödé 日本語 🤖\n"
        ) * 2000
    target = int(mb * 1_000_000)
    return (base * (target // len(base) + 1))[:target]


def paired(ref_fn, our_fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Interleave reference and ours (ABAB...) and keep each one's best run: fair on a busy box."""
    ref, our = [], []
    for _ in range(repeat):
        for fn, sink in ((ref_fn, ref), (our_fn, our)):
            t0 = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - t0)
    return min(ref), min(our)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    text = corpus(args.mb)
    docs = [text[i : i + 2000] for i in range(0, len(text), 2000)]
    size_mb = len(text.encode("utf-8")) / 1e6
    print(f"text: {size_mb:.1f} MB, {len(docs)} documents of 2,000 chars")
    print(
        f"{'encoding':<12} {'task':<26} {'tiktoken s':>10} {'oscar s':>9} {'MB/s oscar':>10} {'ratio':>6}"
    )
    for name, spec in ENCODINGS.items():
        ranks = load_bpe_ranks(_shipped_file(name), spec.sha256)
        raw = tiktoken.Encoding(
            name=f"raw-{name}",
            pat_str=spec.pat_str,
            mergeable_ranks=ranks,
            special_tokens=spec.special_tokens,
        )
        ours = TokenCounter(name)
        assert ours.count(text[:200_000]) == len(raw.encode_ordinary(text[:200_000]))
        rows = [
            (
                "count, one 10 MB string",
                lambda: len(raw.encode_ordinary(text)),
                lambda: ours.count(text),
            ),
            (
                "count per document",
                lambda: [len(raw.encode_ordinary(d)) for d in docs],
                lambda: [ours.count(d) for d in docs],
            ),
            (
                "count batch (2 threads)",
                lambda: raw.encode_ordinary_batch(docs, num_threads=2),
                lambda: ours.count_batch(docs),
            ),
            (
                "vs tiktoken encode()",
                lambda: [len(raw.encode(d)) for d in docs],
                lambda: [ours.count(d) for d in docs],
            ),
        ]
        for task, ref_fn, our_fn in rows:
            t_ref, t_our = paired(ref_fn, our_fn, args.repeat)
            print(
                f"{name:<12} {task:<26} {t_ref:>10.3f} {t_our:>9.3f} {size_mb / t_our:>10.2f} "
                f"{t_ref / t_our:>6.3f}"
            )
    print("ratio = tiktoken time / oscar time (>= 0.95 is the goal; > 1 means oscar is faster)")


if __name__ == "__main__":
    main()
