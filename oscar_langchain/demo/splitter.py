"""Demo section: SemanticTextSplitter chunks the demo corpus under a hard token limit."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig

from oscar_langchain.demo.context import DemoContext
from oscar_langchain.splitter import SemanticTextSplitter


def run(ctx: DemoContext, max_tokens: int = 120) -> None:
    """Split ``ctx.corpus`` with ``ctx.embeddings``; show sizes, break scores, exact offsets."""
    out = ctx.out
    out(f"== Semantic splitting (hard limit {max_tokens} tokens, each sentence embedded once) ==")
    if not ctx.corpus:
        out("  (empty corpus: nothing to split)")
        return
    splitter = SemanticTextSplitter(embeddings=ctx.embeddings, max_tokens=max_tokens)
    config: RunnableConfig = {"callbacks": ctx.callbacks}
    per_doc = splitter.batch(list(ctx.corpus), config=config)
    chunks = [c for doc_chunks in per_doc for c in doc_chunks]
    sizes = [d.metadata["token_count"] for d in chunks] or [0]
    out(
        f"  {len(ctx.corpus)} documents -> {len(chunks)} chunks; tokens per chunk: min "
        f"{min(sizes)}, mean {sum(sizes) / len(sizes):.0f}, max {max(sizes)} (limit {max_tokens})"
    )
    exact = all(
        "".join(
            src.page_content[c.metadata["start_index"] : c.metadata["end_index"]]
            for c in doc_chunks
        )
        == (src.page_content if src.page_content.strip() else "")
        for src, doc_chunks in zip(ctx.corpus, per_doc, strict=True)
    )
    out(f"  chunks reassemble into every document via start_index/end_index: {exact}")
    scored = [d for d in chunks if d.metadata["breakpoint_score"] is not None]
    for doc in sorted(scored, key=lambda d: -float(d.metadata["breakpoint_score"]))[:3]:
        preview = " ".join(doc.page_content.split())[:70]
        out(f"  strongest break ({doc.metadata['breakpoint_score']:.2f}) before: {preview!r}")
