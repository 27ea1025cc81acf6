"""The callbacks demo section runs on fakes and prints the tree, the table and the errors."""

from __future__ import annotations

from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from oscar_langchain.demo import callbacks as demo
from oscar_langchain.demo.context import DemoContext


def context(chat_model: Any = None) -> tuple[DemoContext, list[str]]:
    lines: list[str] = []
    ctx = DemoContext(
        corpus=[
            Document(page_content="Circuit breakers stop calls to a failing backend."),
            Document(page_content="Semantic caches answer repeated questions."),
            Document(page_content="Routers pick the cheapest capable model."),
        ],
        questions=["What do circuit breakers do?", "Why cache answers?", "How do routers pick?"],
        embeddings=DeterministicFakeEmbedding(size=8),
        chat_model=chat_model,
        out=lines.append,
    )
    return ctx, lines


def test_demo_prints_tree_stats_and_errors_without_a_model() -> None:
    ctx, lines = context()
    demo.run(ctx)
    text = "\n".join(lines)
    assert text.count("A: (fake model) an answer from the context") == 3
    assert "Span tree of the first question:" in text
    assert "RunnableSequence" in text and "├─ retrieve" in text
    assert "primary_model" in text and "ERROR" in text
    assert "[components]" in text and "retrieve" in text
    assert "primary_model TimeoutError [timeout]" in text
    assert "rerank _FlakyBackend [connection]" in text


def test_demo_uses_the_context_model_when_there_is_one() -> None:
    calls: list[int] = []

    def factory(i: int, **_: Any) -> FakeListChatModel:
        calls.append(i)
        return FakeListChatModel(responses=["local answer"])

    ctx, lines = context(factory)
    demo.run(ctx)
    assert calls == [0]
    assert "A: local answer" in "\n".join(lines)
