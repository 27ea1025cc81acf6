"""The local-model demo section runs on fakes (no server, no network)."""

from __future__ import annotations

from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from oscar_langchain.demo.context import DemoContext
from oscar_langchain.demo.local import run


def _ctx(chat_model=None) -> tuple[DemoContext, list[str]]:
    lines: list[str] = []
    ctx = DemoContext(
        corpus=[], questions=[], embeddings=None, chat_model=chat_model, out=lines.append
    )  # type: ignore[arg-type]
    return ctx, lines


def test_demo_without_a_local_model_says_how_to_get_one():
    ctx, lines = _ctx()
    run(ctx)
    assert "make demo" in lines[-1]


def test_demo_prints_answer_and_usage_with_a_fake_model():
    reply = AIMessage(
        content="The capital of France is Paris.",
        usage_metadata={"input_tokens": 30, "output_tokens": 7, "total_tokens": 37},
    )
    seen: list[dict] = []

    def factory(index: int, **kwargs):
        seen.append({"index": index, **kwargs})
        return GenericFakeChatModel(messages=iter([reply]))

    ctx, lines = _ctx(factory)
    run(ctx)
    assert seen[0]["index"] == 0 and seen[0]["max_tokens"] == 24
    assert "A: The capital of France is Paris." in lines
    assert "usage: 30 prompt + 7 completion = 37 tokens" in lines
    assert not any("chaos" in line for line in lines)  # a fake has no base URL to proxy


def test_demo_reports_missing_usage():
    ctx, lines = _ctx(lambda i, **kw: GenericFakeChatModel(messages=iter([AIMessage("x")])))
    run(ctx)
    assert lines[-1] == "usage: not reported"
