"""GenAI attributes, metrics, content capture, secrets, annotations and robustness."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.messages import HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig, RunnableLambda
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from oscar_langchain._runnable import OscarRunnable, aannotate_run, annotate_run
from oscar_langchain.callbacks import OscarTracer
from tests.unit_tests.callbacks.fakes import SECRET, FakeChat, otel, tree


def only(spans: Any, name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def all_text(spans: Any) -> str:
    parts = []
    for span in spans:
        parts.append(span.name)
        parts.append(json.dumps(dict(span.attributes or {}), default=str))
        for event in span.events:
            parts.append(json.dumps(dict(event.attributes or {}), default=str))
        parts.append(str(span.status.description))
    return "\n".join(parts)


def test_chat_model_span_has_genai_attributes() -> None:
    provider, exporter = otel()
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | FakeChat()
    chain.invoke({"q": "hi"}, {"callbacks": [OscarTracer(provider)]})
    spans = exporter.get_finished_spans()
    assert tree(spans) == [
        ("RunnableSequence", [("ChatPromptTemplate", []), ("chat gpt-4o-mini", [])])
    ]
    span = only(spans, "chat gpt-4o-mini")
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 64,
        "oscar.run.type": "llm",
        "gen_ai.response.model": "gpt-4o-mini-2024",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 3,
    }


def test_stream_records_time_to_first_token() -> None:
    provider, exporter = otel()
    chunks = list(FakeChat(reply="a b c").stream("hi", {"callbacks": [OscarTracer(provider)]}))
    assert "".join(c.content for c in chunks) == "a b c"  # type: ignore[misc]
    span = only(exporter.get_finished_spans(), "chat gpt-4o-mini")
    assert span.attributes is not None
    assert span.attributes["oscar.time_to_first_token"] >= 0.0
    assert span.attributes["gen_ai.usage.output_tokens"] == 3


def test_content_not_recorded_by_default() -> None:
    provider, exporter = otel()
    FakeChat().invoke("tell me a secret", {"callbacks": [OscarTracer(provider)]})
    text = all_text(exporter.get_finished_spans())
    assert "tell me a secret" not in text
    assert "hello there" not in text


def test_content_opt_in_is_redacted_and_secrets_never_recorded() -> None:
    provider, exporter = otel()
    tracer = OscarTracer(provider, capture_content=True)
    prompt = f"my key is {SECRET} and Authorization: Bearer abc.def.ghi"
    chain = RunnableLambda(lambda x: x) | FakeChat(reply=f"echo {SECRET}")
    chain.invoke([HumanMessage(prompt)], {"callbacks": [tracer]})
    spans = exporter.get_finished_spans()
    text = all_text(spans)
    assert "my key is [REDACTED]" in text
    assert "echo [REDACTED]" in text
    assert SECRET not in text and "abc.def.ghi" not in text
    span = only(spans, "chat gpt-4o-mini")
    assert span.attributes is not None
    messages = json.loads(str(span.attributes["gen_ai.input.messages"]))
    assert messages[0][0]["role"] == "human"


def test_model_error_is_recorded_redacted() -> None:
    provider, exporter = otel()
    model = FakeChat(fail=PermissionError(f"invalid api_key={SECRET}"))
    with contextlib.suppress(PermissionError):
        model.invoke("hi", {"callbacks": [OscarTracer(provider)]})
    span = only(exporter.get_finished_spans(), "chat gpt-4o-mini")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "PermissionError"
    assert SECRET not in all_text([span])
    assert "api_key=[REDACTED]" in str(span.status.description)


def test_metrics_on_meter_provider() -> None:
    provider, _ = otel()
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    tracer = OscarTracer(provider, meters)
    FakeChat().invoke("hi", {"callbacks": [tracer]})
    with contextlib.suppress(TimeoutError):
        FakeChat(fail=TimeoutError("slow")).invoke("hi", {"callbacks": [tracer]})
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    points = list(duration.data.data_points)  # type: ignore[union-attr]
    assert sum(p.count for p in points) == 2  # type: ignore[attr-defined]
    errored = [p for p in points if p.attributes.get("error.type") == "TimeoutError"]
    assert len(errored) == 1
    tokens = metrics["gen_ai.client.token.usage"]
    by_type = {
        p.attributes["gen_ai.token.type"]: p.sum  # type: ignore[attr-defined]
        for p in tokens.data.data_points  # type: ignore[union-attr]
    }
    assert by_type == {"input": 11, "output": 3}


class Router(OscarRunnable[int, int]):
    """A shell that annotates its run like oscar's components do."""

    def _invoke(
        self, input: int, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> int:
        annotate_run(
            run_manager,
            {"oscar.route": "fast", "oscar.cache.hit": True, "api_key": SECRET, "n": [1, 2]},
        )
        return input

    async def _ainvoke(
        self, input: int, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> int:
        await aannotate_run(run_manager, {"oscar.breaker.state": "closed", "obj": object})
        return input


def test_annotations_become_span_attributes() -> None:
    provider, exporter = otel()
    Router().invoke(1, {"callbacks": [OscarTracer(provider)]})
    [span] = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["oscar.route"] == "fast"
    assert attrs["oscar.cache.hit"] is True
    assert attrs["n"] == (1, 2)
    assert "api_key" not in attrs


async def test_async_annotations_become_span_attributes() -> None:
    provider, exporter = otel()
    await Router().ainvoke(1, {"callbacks": [OscarTracer(provider)]})
    [span] = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["oscar.breaker.state"] == "closed"
    assert attrs["obj"] == str(object)


class ExplodingTracer:
    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("exporter misconfigured")


class ExplodingProvider:
    def get_tracer(self, *args: Any, **kwargs: Any) -> ExplodingTracer:
        return ExplodingTracer()


def test_failing_tracer_never_breaks_the_chain(caplog: Any) -> None:
    tracer = OscarTracer(ExplodingProvider())  # type: ignore[arg-type]
    chain = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
    assert chain.invoke(1, {"callbacks": [tracer]}) == 4
    assert tracer.internal_errors == 3  # each of the three spans failed to start
    assert "exporter misconfigured" in caplog.text


async def test_failing_tracer_never_breaks_async_chain() -> None:
    tracer = OscarTracer(ExplodingProvider())  # type: ignore[arg-type]
    assert await RunnableLambda(lambda x: x + 1).ainvoke(1, {"callbacks": [tracer]}) == 2
    assert tracer.internal_errors == 1


def test_tool_and_retriever_spans() -> None:
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.tools import tool

    @tool
    def lookup(city: str) -> str:
        """Weather for a city."""
        return "sunny"

    class Retriever(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
            return [Document(page_content=query)]

    provider, exporter = otel()
    tracer = OscarTracer(provider)
    lookup.invoke({"city": "Oslo"}, {"callbacks": [tracer]})
    Retriever().invoke("q", {"callbacks": [tracer]})
    spans = exporter.get_finished_spans()
    assert only(spans, "lookup").attributes == {
        "oscar.run.type": "tool",
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "lookup",
    }
    assert only(spans, "Retriever").attributes == {"oscar.run.type": "retriever"}
