"""OpenTelemetry tracer: one span per LangChain run, nested exactly as the runs are.

Spans are parented by ``parent_run_id`` (never by the ambient context, which async
code and thread pools do not carry reliably); a root run's span joins the caller's
current span. Model runs get the GenAI semantic-convention attributes and, given a
``MeterProvider``, the GenAI client metrics. Prompt and completion content is recorded
only with ``capture_content=True``, always redacted; invocation parameters are never
copied wholesale, so API keys and headers never reach a span. Runs annotated with
:func:`oscar_langchain._runnable.annotate_run` get those attributes on their span.

Per-event work is a few dict operations. With the SDK's ``TracerProvider`` and quiet
processors, spans are built directly (:mod:`~oscar_langchain.callbacks._otel_fast`:
what ``start_span`` would export, without its mutable ``_Span``); otherwise through
``start_span``, with the parent's context built lazily, once, when its first child starts.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from oscar_langchain._runnable import ANNOTATION_EVENT
from oscar_langchain.callbacks import _genai as ga
from oscar_langchain.callbacks._base import RunKey, SafeHandler
from oscar_langchain.callbacks._otel_fast import FastSpans
from oscar_langchain.callbacks._redact import redact, truncate
from oscar_langchain.callbacks._runs import AttributeValue, ModelRequest, llm_usage
from oscar_langchain.errors import ConfigurationError

__all__ = ["OscarTracer"]

_CLIENT = SpanKind.CLIENT
_INTERNAL = SpanKind.INTERNAL


class _Run:
    __slots__ = ("ctx", "metric_attrs", "span", "start", "streamed")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.ctx: Context | None = None
        self.metric_attrs: dict[str, AttributeValue] | None = None
        self.start = 0.0
        self.streamed = False


class OscarTracer(SafeHandler):
    """A LangChain callback handler that turns runs into OpenTelemetry spans.

    Args:
        tracer_provider: where spans go (default: the global tracer provider).
        meter_provider: when given, GenAI metrics are recorded on it.
        capture_content: record prompts, completions, chain inputs and outputs
            (redacted and truncated); off by default.
        max_content_chars: the longest content attribute recorded.
        max_open_runs: the most spans open at once; past it the oldest is ended and
            marked ``oscar.evicted``.

    Example:
        >>> from langchain_core.runnables import RunnableLambda
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        ...     InMemorySpanExporter,
        ... )
        >>> exporter = InMemorySpanExporter()
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(SimpleSpanProcessor(exporter))
        >>> chain = RunnableLambda(lambda x: x + 1) | RunnableLambda(lambda x: x * 2)
        >>> chain.invoke(1, {"callbacks": [OscarTracer(provider)]})
        4
        >>> sorted(s.name for s in exporter.get_finished_spans())
        ['RunnableLambda', 'RunnableLambda', 'RunnableSequence']
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        capture_content: bool = False,
        max_content_chars: int = 4000,
        max_open_runs: int = 100_000,
    ) -> None:
        super().__init__(max_open_runs=max_open_runs)
        if max_content_chars < 16:
            raise ConfigurationError("max_content_chars", "must be at least 16")
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer("oscar_langchain")
        self._fast = FastSpans.create(provider, self._tracer)
        self._metrics = ga.GenAIMetrics(meter_provider) if meter_provider is not None else None
        self.capture_content = capture_content
        self.max_content_chars = max_content_chars
        self._runs: dict[RunKey, _Run] = {}

    @property
    def open_runs(self) -> int:
        """Spans started and not yet ended (bounded by ``max_open_runs``)."""
        return len(self._runs)

    def _start(
        self,
        name: str,
        parent_run_id: RunKey | None,
        kind: SpanKind = _INTERNAL,
        attributes: dict[str, AttributeValue] | None = None,
    ) -> trace.Span:
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        fast = self._fast
        if fast is not None and fast.still_valid:
            return fast.start(name, parent.span if parent is not None else None, kind, attributes)
        context = None
        if parent is not None:
            if parent.ctx is None:
                parent.ctx = trace.set_span_in_context(parent.span)
            context = parent.ctx
        return self._tracer.start_span(name, context=context, kind=kind, attributes=attributes)

    def _open(self, run_id: RunKey, run: _Run) -> None:
        runs = self._runs
        runs[run_id] = run
        if len(runs) > self.max_open_runs:
            while len(runs) > self.max_open_runs:
                try:
                    oldest = runs.pop(next(iter(runs)))
                except (StopIteration, KeyError, RuntimeError):  # raced with another thread
                    return
                oldest.span.set_attribute("oscar.evicted", True)
                oldest.span.end()

    def _run_start(
        self, run_type: str, run_id: RunKey, parent_run_id: RunKey | None, name: str, inputs: Any
    ) -> None:
        # Chains, the bulk of runs, carry no attribute: an empty start is the SDK's fast path.
        attributes: dict[str, AttributeValue] | None = None
        if run_type != "chain":
            attributes = {ga.RUN_TYPE: run_type}
            if run_type == "tool":
                attributes[ga.OPERATION] = "execute_tool"
                attributes[ga.TOOL_NAME] = name
        if self.capture_content:
            attributes = attributes or {}
            attributes[ga.INPUT] = ga.content_text(inputs, self.max_content_chars)
        self._open(run_id, _Run(self._start(name, parent_run_id, _INTERNAL, attributes)))

    def _model_start(
        self, run_id: RunKey, parent_run_id: RunKey | None, name: str, request: ModelRequest
    ) -> None:
        model, provider = request.model()
        operation = "chat" if request.chat else "text_completion"
        metric_attrs: dict[str, AttributeValue] = {ga.OPERATION: operation}
        if provider:
            metric_attrs[ga.PROVIDER] = provider
            metric_attrs[ga.SYSTEM] = provider
        if model:
            metric_attrs[ga.REQUEST_MODEL] = model
        attributes = {**metric_attrs, ga.RUN_TYPE: "llm"}
        temperature, max_tokens = request.params()
        if temperature is not None:
            attributes[ga.REQUEST_TEMPERATURE] = temperature
        if max_tokens is not None:
            attributes[ga.REQUEST_MAX_TOKENS] = max_tokens
        if self.capture_content:
            attributes[ga.INPUT_MESSAGES] = ga.content_text(
                ga.message_dicts(request.prompts), self.max_content_chars
            )
        span_name = f"{operation} {model}" if model else operation
        run = _Run(self._start(span_name, parent_run_id, _CLIENT, attributes))
        run.metric_attrs = metric_attrs
        run.start = time.perf_counter()
        self._open(run_id, run)

    def _token(self, run_id: RunKey) -> None:
        run = self._runs.get(run_id)
        if run is not None and not run.streamed:
            run.streamed = True
            run.span.set_attribute(ga.TTFT, time.perf_counter() - run.start)

    def _run_end(self, run_id: RunKey, outputs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        if self.capture_content:
            run.span.set_attribute(ga.OUTPUT, ga.content_text(outputs, self.max_content_chars))
        run.span.end()

    def _model_end(self, run_id: RunKey, response: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        usage = llm_usage(response)
        attributes: dict[str, AttributeValue] = {}
        if usage.response_model:
            attributes[ga.RESPONSE_MODEL] = usage.response_model
        if usage.finish_reasons:
            attributes[ga.FINISH_REASONS] = usage.finish_reasons
        if usage.input_tokens is not None:
            attributes[ga.INPUT_TOKENS] = usage.input_tokens
        if usage.output_tokens is not None:
            attributes[ga.OUTPUT_TOKENS] = usage.output_tokens
        if self.capture_content and usage.texts:
            attributes[ga.OUTPUT_MESSAGES] = ga.content_text(
                [{"role": "assistant", "content": t} for t in usage.texts],
                self.max_content_chars,
            )
        run.span.set_attributes(attributes)
        run.span.end()
        if self._metrics is not None and run.metric_attrs is not None:
            metric_attrs = run.metric_attrs
            if usage.response_model:
                metric_attrs = {**metric_attrs, ga.RESPONSE_MODEL: usage.response_model}
            self._metrics.record(
                metric_attrs,
                time.perf_counter() - run.start,
                usage.input_tokens,
                usage.output_tokens,
            )

    def _run_error(self, run_id: RunKey, error: BaseException) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        error_type = type(error).__qualname__
        message = truncate(redact(str(error)), self.max_content_chars)
        stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        span = run.span
        span.set_attribute(ga.ERROR_TYPE, error_type)
        span.add_event(
            "exception",
            {
                "exception.type": error_type,
                "exception.message": message,
                "exception.stacktrace": truncate(redact(stack), self.max_content_chars),
            },
        )
        span.set_status(Status(StatusCode.ERROR, message))
        span.end()
        if self._metrics is not None and run.metric_attrs is not None:
            self._metrics.record(
                {**run.metric_attrs, ga.ERROR_TYPE: error_type}, time.perf_counter() - run.start
            )

    def _custom(self, name: str, data: Any, run_id: RunKey) -> None:
        if name != ANNOTATION_EVENT or not isinstance(data, Mapping):
            return
        run = self._runs.get(run_id)
        if run is not None:
            run.span.set_attributes(ga.safe_attributes(data))
