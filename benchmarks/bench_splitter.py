"""Speed of SemanticTextSplitter on 1 MB of text against the anchors, same embedder.

    python benchmarks/bench_splitter.py [--mb 1.0] [--repeats 3]

Compared in one run, each with a fresh ``OfflineEmbeddings`` (no cache):

* bare: embedding every sentence of our segmentation once, in batches of 256, through
  the LangChain ``embed_documents`` interface (the floor any semantic splitter pays), and
  through ``OfflineEmbeddings.embed_array`` (the same vectors as numpy, which ours uses
  when given ``OfflineEmbeddings``);
* ours: ``SemanticTextSplitter`` at its defaults (max 400 tokens, optimal breaks);
* langchain-experimental ``SemanticChunker`` (defaults);
* chonkie ``SemanticChunker`` (defaults; our embeddings through its BaseEmbeddings).

Prints the best wall and CPU time of interleaved runs, the chunk count, the largest chunk
in tokens, and the ratios to bare.
The text is the chunking-eval corpora (or a synthetic text when they are absent).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._splitter_common import (
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


def bare_array(text: str) -> tuple[int, int]:
    emb = OfflineEmbeddings()
    sentences = [s.text(text) for s in SentenceSegmenter()(text)]
    for at in range(0, len(sentences), 256):
        emb.embed_array(sentences[at : at + 256])
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


def timed(
    fns: list[tuple[str, Callable[[str], tuple[int, int]]]], text: str, repeats: int
) -> dict[str, tuple[float, float, int, int]]:
    """Best wall and CPU seconds per splitter, runs interleaved so load hits all alike."""
    best: dict[str, tuple[float, float, int, int]] = {}
    for _ in range(repeats):
        for name, fn in fns:
            w0, c0 = time.perf_counter(), time.process_time()
            count, largest = fn(text)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            old = best.get(name, (float("inf"), float("inf"), 0, 0))
            best[name] = (min(old[0], wall), min(old[1], cpu), count, largest)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    text = corpus(int(args.mb * 1_000_000))
    OfflineEmbeddings().embed_documents(["warm up"])
    COUNTER.count("warm up")
    print(f"text: {len(text):,} chars, {COUNTER.count(text):,} tokens; best of {args.repeats}")
    fns = [
        ("bare: embed each sentence once", bare),
        ("bare, numpy path (embed_array)", bare_array),
        ("ours: SemanticTextSplitter", ours),
        ("langchain-experimental SemanticChunker", lc_semantic),
        ("chonkie SemanticChunker", chonkie),
    ]
    best = timed(fns, text, args.repeats)
    floor_wall, floor_cpu = best[fns[0][0]][:2]
    print("\n| splitter | wall (s) | x bare | CPU (s) | x bare | chunks | largest chunk (tokens) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, _ in fns:
        wall, cpu, count, largest = best[name]
        size = f"{largest:,}" if largest else f"({count:,} sentences)"
        chunks = f"{count:,}" if largest else "-"
        print(
            f"| {name} | {wall:.2f} | {wall / floor_wall:.2f} | {cpu:.2f} | "
            f"{cpu / floor_cpu:.2f} | {chunks} | {size} |"
        )


if __name__ == "__main__":
    main()
