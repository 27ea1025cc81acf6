"""Demo: route short and long/complex questions over a cheap and a strong model."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import FakeListChatModel

from oscar_langchain.demo.context import DemoContext
from oscar_langchain.models import ModelInfo, ModelRegistry
from oscar_langchain.routing import QualityFloor, Route
from oscar_langchain.routing.router import RouterRunnable

__all__ = ["run"]


def _model(ctx: DemoContext, index: int, name: str) -> Any:
    if ctx.chat_model is None:
        return FakeListChatModel(responses=[f"({name}) a short answer"])
    return ctx.chat_model(index, max_tokens=64)


def run(ctx: DemoContext) -> None:
    """Route a mix of questions and print each decision and the status table."""
    registry = ModelRegistry(
        [
            ModelInfo(name="demo-small", context_window=2048, input_price=0.1,
                      output_price=0.4, quality=0.45),
            ModelInfo(name="demo-large", context_window=8192, input_price=3.0,
                      output_price=12.0, quality=0.9),
        ]
    )  # fmt: skip
    router = RouterRunnable(
        routes=[
            Route(name="small", runnable=_model(ctx, 0, "small"), model="demo-small", rpm=60),
            Route(name="large", runnable=_model(ctx, 1, "large"), model="demo-large", budget=1.0),
        ],
        selector=QualityFloor(),
        registry=registry,
        default_output_tokens=128,
    )
    context = " ".join(d.page_content for d in ctx.corpus)
    long_question = "Using the notes below, answer.\n" + (context + " ") * (
        1 + 12_000 // max(1, len(context))
    )
    questions = [
        *ctx.questions[:3],
        "Explain step by step why the integral of 2*x from 0 to 3 equals 9, "
        "then compare two ways to prove it.",
        long_question,
    ]
    ctx.out("== Router: cost-, context- and complexity-aware routing ==")
    for q in questions:
        try:
            answer = router.invoke(q, {"callbacks": ctx.callbacks})
        except Exception as exc:  # noqa: BLE001 - a demo shows the failure and goes on
            ctx.out(f"  {q[:50]!r}: failed: {exc}")
            continue
        d = answer.response_metadata["oscar_route"]
        rejected = "; ".join(f"{k}: {v}" for k, v in d["rejected"].items()) or "none"
        ctx.out(
            f"  {q[:50]!r:<54} -> {d['chosen']:<6} complexity={d['complexity']:.2f} "
            f"tokens={d['input_tokens']} rejected: {rejected}"
        )
    ctx.out(router.status_table())
