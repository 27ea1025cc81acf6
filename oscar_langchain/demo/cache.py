"""Demo: a semantic cache in front of the chat model, with its false-hit guard.

Asks a question twice and a paraphrase once (both answered from the cache), then a
near-miss with a negation that embeddings rate as very similar but the guard refuses.
Prints each hit, its similarity, and the calls, time, tokens and money saved.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel, FakeListChatModel
from langchain_core.messages import BaseMessage

from oscar_langchain._runnable import ANNOTATION_EVENT
from oscar_langchain.cache import CachedRunnable, CacheEvent, semantic_engine
from oscar_langchain.demo.context import DemoContext
from oscar_langchain.models import estimate_cost
from oscar_langchain.tokens import TokenCounter

__all__ = ["run"]

QUESTION = "What does a circuit breaker do in an LLM gateway?"
ASKS = [
    ("the question", QUESTION),
    ("the same question again", QUESTION),
    ("a paraphrase", "In an LLM gateway, what does a circuit breaker do?"),
    ("a near-miss (negation)", "What does a circuit breaker not do in an LLM gateway?"),
]
PRICED_AS = "gpt-4o-mini"


def _model(ctx: DemoContext) -> BaseChatModel:
    if ctx.chat_model is not None:
        return ctx.chat_model(0, temperature=0, max_tokens=80)
    return FakeListChatModel(
        responses=[
            "It stops sending requests to a failing backend for a while, then probes it.",
            "It does not retry failed requests by itself or pick another provider.",
        ]
    )


class _CacheAnnotations(BaseCallbackHandler):
    """Keeps the ``oscar.cache.*`` attributes of the last cached run (what a tracer sees)."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Record the cache attributes of an annotation event."""
        if name == ANNOTATION_EVENT and isinstance(data, dict) and "oscar.cache.hit" in data:
            self.last = dict(data)


def _text(message: Any) -> str:
    content = message.content if isinstance(message, BaseMessage) else message
    return content if isinstance(content, str) else str(content)


def run(ctx: DemoContext) -> None:
    """Run the cache demo, printing to ``ctx.out``."""
    out = ctx.out
    rejections: list[CacheEvent] = []
    engine = semantic_engine(ctx.embeddings, on_event=rejections.append)
    cached = CachedRunnable(runnable=_model(ctx), cache=engine)
    counter = TokenCounter()
    miss_seconds: list[float] = []
    hit_seconds: list[float] = []
    saved_in = saved_out = 0
    seen = _CacheAnnotations()
    out("== Cache: exact and semantic, guarded against false hits ==")
    for label, question in ASKS:
        before = cached.stats()
        start = time.perf_counter()
        answer = _text(cached.invoke(question, {"callbacks": [*ctx.callbacks, seen]}))
        elapsed = time.perf_counter() - start
        after = cached.stats()
        hit = bool(seen.last.get("oscar.cache.hit"))
        semantic = bool(seen.last.get("oscar.cache.semantic"))
        if hit:
            hit_seconds.append(elapsed)
            saved_in += counter.count(question)
            saved_out += counter.count(answer)
        else:
            miss_seconds.append(elapsed)
        kind = "semantic hit" if semantic else "exact hit" if hit else "miss -> model"
        if hit:
            kind += f" (similarity {seen.last['oscar.cache.similarity']:.3f})"
        out(f"- {label}: {question!r}")
        out(f"    {kind} in {elapsed * 1000:.1f} ms: {answer[:90]!r}")
        if after["rejected"] > before["rejected"]:
            out(f"    guard refused a neighbour: {rejections[-1].detail}")
    stats = cached.stats()
    out(
        f"hits {int(stats['hits'])}/{int(stats['hits'] + stats['misses'])} "
        f"(semantic {int(stats['semantic_hits'])}), rejected near-misses {int(stats['rejected'])}"
    )
    if hit_seconds and miss_seconds:
        avg_miss = sum(miss_seconds) / len(miss_seconds)
        saved = sum(avg_miss - h for h in hit_seconds)
        cost = estimate_cost(PRICED_AS, saved_in, saved_out)
        out(
            f"saved {len(hit_seconds)} model calls, ~{saved * 1000:.0f} ms, "
            f"{saved_in + saved_out} tokens (${cost:.6f} at {PRICED_AS} prices)"
        )
