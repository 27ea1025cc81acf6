from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel

from oscar_langchain.demo.cache import run
from oscar_langchain.demo.context import DemoContext
from oscar_langchain.embeddings import OfflineEmbeddings


def test_demo_runs_without_a_local_model() -> None:
    lines: list[str] = []
    ctx = DemoContext(
        corpus=[Document("x")], questions=["q"], embeddings=OfflineEmbeddings(), out=lines.append
    )
    run(ctx)
    text = "\n".join(lines)
    assert "exact hit (similarity 1.000)" in text
    semantic = [line for line in lines if "semantic hit (similarity 0." in line]
    assert len(semantic) == 1  # the paraphrase, below an exact match
    assert "guard refused a neighbour: negation differs" in text
    assert "hits 2/4 (semantic 1), rejected near-misses 1" in text
    assert "saved 2 model calls" in text


def test_demo_uses_the_context_model() -> None:
    lines: list[str] = []
    made: list[dict] = []

    def factory(i: int, **kwargs):
        made.append({"i": i, **kwargs})
        return FakeListChatModel(responses=["A", "B"])

    ctx = DemoContext(corpus=[], questions=[], embeddings=OfflineEmbeddings(),
                      chat_model=factory, out=lines.append)  # fmt: skip
    run(ctx)
    assert made and made[0]["i"] == 0
    assert "'A'" in "\n".join(lines)
