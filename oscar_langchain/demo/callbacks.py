"""Demo section: tracing, performance stats and error aggregation on a small RAG chain.

A retrieve -> prompt -> chat model -> parser chain answers the demo's questions with
``oscar_callbacks()`` installed. A flaky step (retried) and a failing model (with a
fallback) give the error aggregator something to count. The section prints the span
tree of one question, the stats table and the error summary.
"""

from __future__ import annotations

import itertools
from typing import Any, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from oscar_langchain.callbacks import (
    OscarCallbacks,
    PerformanceStats,
    format_span_tree,
    oscar_callbacks,
)
from oscar_langchain.demo.context import ANSWER_PROMPT, DemoContext

__all__ = ["build_chain", "print_observability", "run"]


class _FlakyBackend(ConnectionError):
    """The demo's simulated transient failure."""


def build_chain(ctx: DemoContext) -> Runnable[str, str]:
    """The demo chain: keyword retrieval, a prompt, the model (with a fallback), a parser."""
    docs = ctx.corpus

    def retrieve(question: str) -> dict[str, str]:
        words = {w.lower().strip("?.,") for w in question.split() if len(w) > 3}
        ranked = sorted(docs, key=lambda d: -sum(w in d.page_content.lower() for w in words))
        return {"question": question, "context": "\n".join(d.page_content for d in ranked[:2])}

    counter = itertools.count()

    def flaky_rerank(payload: dict[str, str]) -> dict[str, str]:
        if next(counter) % 3 == 0:  # every third call fails once, then the retry succeeds
            raise _FlakyBackend("reranker connection reset")
        return payload

    prompt = ChatPromptTemplate.from_messages([("human", ANSWER_PROMPT)])
    model: BaseChatModel = (
        ctx.chat_model(0)
        if ctx.chat_model is not None
        else FakeListChatModel(responses=["(fake model) an answer from the context"])
    )
    # The primary model always times out here, so the fallback answers (and errors count).
    primary: Runnable[Any, Any] = RunnableLambda(_refuse, name="primary_model")
    return (
        RunnableLambda(retrieve, name="retrieve")
        | RunnableLambda(flaky_rerank, name="rerank").with_retry(
            stop_after_attempt=2,
            wait_exponential_jitter=False,
            retry_if_exception_type=(_FlakyBackend,),
        )
        | prompt
        | primary.with_fallbacks([cast(Runnable[Any, Any], model)])
        | StrOutputParser()
    )


def _refuse(_: Any) -> str:
    raise TimeoutError("primary model timed out")


def print_observability(
    cb: OscarCallbacks, exporter: InMemorySpanExporter, ctx: DemoContext
) -> None:
    """Print the first trace's span tree, the stats table and the error summary."""
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    first_trace = roots[0].context.trace_id if roots else None
    ctx.out("Span tree of the first question:")
    ctx.out(format_span_tree([s for s in spans if s.context.trace_id == first_trace]))
    ctx.out("\nPerformance stats:")
    ctx.out(cb.stats.report())
    ctx.out("\nErrors:")
    ctx.out(cb.errors.summary())


def run(ctx: DemoContext) -> None:
    """Answer a few questions with all three handlers installed and show what they saw."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cb = oscar_callbacks(tracer_provider=provider, stats=PerformanceStats())
    chain = build_chain(ctx)
    callbacks = [*cb.handlers, *ctx.callbacks]
    ctx.out("== Observability: OpenTelemetry spans, performance stats, error aggregation ==")
    for question in ctx.questions[:3]:
        try:
            answer = chain.invoke(question, {"callbacks": callbacks})
        except Exception as exc:  # noqa: BLE001 - the demo reports and carries on
            answer = f"failed: {type(exc).__name__}"
        ctx.out(f"Q: {question}\nA: {answer[:120]}")
    ctx.out("")
    print_observability(cb, exporter, ctx)
