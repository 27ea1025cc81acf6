"""Demo section: index the corpus in a HybridRetriever and answer questions from it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.messages import HumanMessage

from oscar_langchain.demo.context import ANSWER_PROMPT, DemoContext
from oscar_langchain.retrieval import HybridRetriever, QueryOptimizer


def _context(docs: list[Document]) -> str:
    return "\n\n".join(f"[{d.id}] {d.page_content}" for d in docs)


def run(ctx: DemoContext) -> None:
    """Index ``ctx.corpus``; per question show BM25, dense and fused hits, then answer."""
    out = ctx.out
    out("== Hybrid retrieval (BM25 + embeddings, fused by z-scores) ==")
    retriever = HybridRetriever.from_documents(ctx.corpus, embeddings=ctx.embeddings, k=2)
    optimizer = QueryOptimizer(retriever=retriever, expansion_terms=3)
    out(
        f"  indexed {len(retriever)} documents, {retriever.bm25.vocabulary_size} BM25 terms; "
        "persisting and reloading the index ..."
    )
    with tempfile.TemporaryDirectory() as tmp:
        retriever.save(Path(tmp) / "index")
        retriever = HybridRetriever.load(Path(tmp) / "index", embeddings=ctx.embeddings)
    optimizer = QueryOptimizer(retriever=retriever, expansion_terms=3)
    chain = optimizer | retriever
    config = {"callbacks": ctx.callbacks}
    model = ctx.chat_model(0) if ctx.chat_model is not None else None
    for question in ctx.questions:
        out(f"  Q: {question}")
        for label, kwargs in (("bm25 ", {"dense_weight": 0.0}), ("dense", {"bm25_weight": 0.0})):
            ids = [d.id for d in retriever.invoke(question, config, **kwargs)]  # type: ignore[arg-type]
            out(f"     {label} -> {ids}")
        expanded = optimizer.invoke(question)
        docs = chain.invoke(question, config)  # type: ignore[arg-type]
        out(f"     fused (query expanded to {expanded!r}) -> {[d.id for d in docs]}")
        if model is None:
            for doc in docs:
                out(f"       [{doc.id}] {doc.page_content[:110]}...")
            continue
        prompt = ANSWER_PROMPT.format(context=_context(docs), question=question)
        answer = model.invoke([HumanMessage(prompt)], config)  # type: ignore[arg-type]
        out(f"     A: {str(answer.content).strip()}")
