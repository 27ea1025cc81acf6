from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from oscar_langchain.demo import splitter as demo
from oscar_langchain.demo.context import DemoContext


def test_demo_splits_the_corpus() -> None:
    lines: list[str] = []
    corpus = [
        Document(
            page_content="Cats purr. Cats sleep all day. " * 20 + "\n\nStocks fell. Bonds rose."
        ),
        Document(page_content="Short document."),
        Document(page_content="   "),
    ]
    ctx = DemoContext(
        corpus=corpus,
        questions=["What do cats do?"],
        embeddings=DeterministicFakeEmbedding(size=16),
        out=lines.append,
    )
    demo.run(ctx, max_tokens=40)
    text = "\n".join(lines)
    assert "3 documents ->" in text
    assert "reassemble into every document via start_index/end_index: True" in text
    assert "strongest break" in text


def test_demo_handles_an_empty_corpus() -> None:
    lines: list[str] = []
    ctx = DemoContext(
        corpus=[], questions=[], embeddings=DeterministicFakeEmbedding(size=4), out=lines.append
    )
    demo.run(ctx)
    assert lines[-1] == "  (empty corpus: nothing to split)"
