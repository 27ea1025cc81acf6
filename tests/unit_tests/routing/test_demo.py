from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.embeddings import FakeEmbeddings

from oscar_langchain.demo.context import DemoContext
from oscar_langchain.demo.router import run


def test_demo_routes_with_fakes():
    lines: list[str] = []
    ctx = DemoContext(
        corpus=[Document(page_content="Circuit breakers stop calls to failing backends.")],
        questions=["What is a circuit breaker?", "Why route?"],
        embeddings=FakeEmbeddings(size=8),
        out=lines.append,
    )
    run(ctx)
    text = "\n".join(lines)
    assert "-> small" in text
    assert "-> large" in text and "context window" in text
    assert "route" in lines[-1].splitlines()[0]
