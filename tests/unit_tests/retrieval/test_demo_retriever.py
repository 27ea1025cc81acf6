from __future__ import annotations

from typing import Any

from langchain_core.language_models import FakeListChatModel

from oscar_langchain.demo import retriever as demo
from oscar_langchain.demo.__main__ import load_context


def test_demo_prints_passages_without_a_model() -> None:
    ctx = load_context()
    lines: list[str] = []
    ctx.out = lines.append
    demo.run(ctx)
    text = "\n".join(lines)
    assert "indexed 6 documents" in text and text.count("Q: ") == len(ctx.questions)
    assert "fused" in text and "       [" in text


def test_demo_answers_with_a_chat_model() -> None:
    ctx = load_context()
    lines: list[str] = []
    ctx.out = lines.append
    prompts: list[Any] = []

    class Recording(FakeListChatModel):
        def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
            prompts.append(input)
            return super().invoke(input, config, **kwargs)

    ctx.chat_model = lambda i, **kw: Recording(responses=["From the context: yes."])
    demo.run(ctx)
    assert sum("A: From the context: yes." in line for line in lines) == len(ctx.questions)
    [message] = prompts[0]  # one user turn: Gemma's template has no system role
    assert message.content.startswith("[") and "\n\nQuestion: " in message.content
