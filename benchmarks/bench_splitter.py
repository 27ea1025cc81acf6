"""Speed of SemanticTextSplitter on 1 MB of text against the anchors, same embedder.

    python benchmarks/bench_splitter.py [--mb 1.0] [--repeats 3]

Compared in one run, each with a fresh ``OfflineEmbeddings`` (no cache):

* bare: embedding every sentence of our segmentation once, in batches of 256, through
  the LangChain ``embed_documents`` interface (the floor any semantic splitter pays);
* ours: ``SemanticTextSplitter`` at its defaults (max 400 tokens, optimal breaks);
* langchain-experimental ``SemanticChunker`` (defaults);
* chonkie ``SemanticChunker`` (defaults; our embeddings through its BaseEmbeddings).

Prints median wall time, chunk count, the largest chunk in tokens, and the ratio to bare.
The text is the chunking-eval corpora (or a synthetic text when they are absent).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    COUNTER,
    DATA,
    chonkie_embeddings,
    semantic_chunker_spans,
)
from oscar_langchain.embeddings import OfflineEmbeddings
from oscar_langchain.splitter import SemanticTextSplitter, SentenceSegmenter


def corpus(n_chars: int) -> str:
    files = sorted((DATA / "corpora").glob("*.md")) if DATA.exists() else []
    if files:
        text = "\n\n".join(p.read_text(encoding="utf-8") for p in files)
    else:
        print("[note] chunking-eval corpora absent: using a synthetic text")
        text = " ".join(
            f"Sentence {i} talks about topic {i // 40}, e.g. item {i}." for i in range(40000)
        )
    while len(text) < n_chars:
        text += "\n\n" + text
    return text[:n_chars]


def bare(text: str) -> tuple[int, int]:
    emb = OfflineEmbeddings()
    sentences = [s.text(text) for s in SentenceSegmenter()(text)]
    for at in range(0, len(sentences), 256):
        emb.embed_documents(sentences[at : at + 256])
    return len(sentences), 0


def ours(text: str) -> tuple[int, int]:
    chunks = SemanticTextSplitter(embeddings=OfflineEmbeddings()).split_chunks(text)
    return len(chunks), max(c.tokens for c in chunks)


def lc_semantic(text: str) -> tuple[int, int]:
    from langchain_experimental.text_splitter import SemanticChunker

    chunks = SemanticChunker(OfflineEmbeddings()).split_text(text)
    spans = semantic_chunker_spans(text, chunks)  # not timed-relevant: cheap
    return len(chunks), max(COUNTER.count(text[s:e]) for s, e in spans)


def chonkie(text: str) -> tuple[int, int]:
    from chonkie import SemanticChunker

    chunks = SemanticChunker(embedding_model=chonkie_embeddings(OfflineEmbeddings())).chunk(text)
    return len(chunks), max(c.token_count for c in chunks)


def timed(fn: Callable[[str], tuple[int, int]], text: str, repeats: int) -> tuple[float, int, int]:
    times = []
    out = (0, 0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(text)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), *out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    text = corpus(int(args.mb * 1_000_000))
    OfflineEmbeddings().embed_documents(["warm up"])
    COUNTER.count("warm up")
    print(f"text: {len(text):,} chars, {COUNTER.count(text):,} tokens; median of {args.repeats}")
    rows = []
    for name, fn in [
        ("bare: embed each sentence once", bare),
        ("ours: SemanticTextSplitter", ours),
        ("langchain-experimental SemanticChunker", lc_semantic),
        ("chonkie SemanticChunker", chonkie),
    ]:
        seconds, count, largest = timed(fn, text, args.repeats)
        rows.append((name, seconds, count, largest))
        print(f"{name:<40} {seconds:7.2f} s", flush=True)
    floor = rows[0][1]
    print("\n| splitter | time (s) | x bare | chunks | largest chunk (tokens) |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, count, largest in rows:
        size = f"{largest:,}" if largest else f"({count:,} sentences)"
        chunks = f"{count:,}" if largest else "-"
        print(f"| {name} | {seconds:.2f} | {seconds / floor:.2f} | {chunks} | {size} |")


if __name__ == "__main__":
    main()
