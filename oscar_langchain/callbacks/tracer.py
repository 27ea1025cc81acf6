"""OpenTelemetry tracer: one span per LangChain run, nested exactly as the runs are.

Spans are parented by ``parent_run_id`` (never by the ambient context, which async
code and thread pools do not carry reliably); a root run's span joins the caller's
current span at the root's start. Model runs get the GenAI semantic-convention
attributes and, given a ``MeterProvider``, the GenAI client metrics. Prompt and
completion content is recorded only with ``capture_content=True``, always redacted;
invocation parameters are never copied wholesale, so API keys and headers never reach a
span. Runs annotated with :func:`oscar_langchain._runnable.annotate_run` get those
attributes on their span.

**Spans are built when their runs are done, in batches.** A run's start and end are
recorded as a small ``_Run`` (name, parent, times, attributes); its span is created
(with the recorded start time) and ended (with the recorded end time) when the run has
no open ancestor left, i.e. when its root ends, or earlier once ``max_pending_spans``
ended runs are waiting (a long-lived root still delivers its children's spans). Building
a trace's spans in one tight loop at its end costs a third of what the same work costs
spread between LangChain's frames. What reaches the processors is the same: each span
with its own start and end times, ids, parent, attributes, events and status, handed to
``on_end`` in the order the runs ended. :meth:`OscarTracer.flush` delivers what is
waiting. With the SDK's ``TracerProvider`` and quiet processors, spans are built
directly (:mod:`~oscar_langchain.callbacks._otel_fast`: what ``start_span`` would
export, without its mutable ``_Span``); otherwise through ``start_span``.
"""

from __future__ import annotations

import atexit
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import Attributes

from oscar_langchain._runnable import ANNOTATION_EVENT
from oscar_langchain.callbacks import _genai as ga
from oscar_langchain.callbacks._base import RunKey, SafeHandler
from oscar_langchain.callbacks._otel_fast import ExportBatch, FastSpan, FastSpans
from oscar_langchain.callbacks._redact import redact, truncate
from oscar_langchain.callbacks._runs import AttributeValue, ModelRequest, llm_usage
from oscar_langchain.errors import ConfigurationError

__all__ = ["OscarTracer"]

_CLIENT = SpanKind.CLIENT
_INTERNAL = SpanKind.INTERNAL
_time_ns = time.time_ns
_Start = Callable[
    [str, "trace.Span | None", SpanKind, "dict[str, AttributeValue] | None", int], trace.Span
]


class _Run:
    """One run's span-to-be: what it was started with and what happened to it.

    Only the first five fields are set per run; the rest keep their class defaults until a
    run needs them (most chain runs never do).
    """

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        parent: _Run | None,
        attributes: dict[str, AttributeValue] | None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.parent = parent
        self.start_attributes = attributes
        self.start = _time_ns()

    end = 0
    caller: trace.Span | None = None
    """A root's parent: the caller's current span when the root started."""
    span: trace.Span | None = None
    late: dict[str, AttributeValue] | None = None
    events: list[tuple[str, Attributes, int]] | None = None
    status: Status | None = None
    metric_attrs: dict[str, AttributeValue] | None = None
    t0 = 0.0
    streamed = False

    def set(self, key: str, value: AttributeValue) -> None:
        """Set an attribute after the start."""
        if self.late is None:
            self.late = {}
        self.late[key] = value

    def update(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Set attributes after the start."""
        if self.late is None:
            self.late = {}
        self.late.update(attributes)


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
        max_pending_spans: the most ended runs waiting for their root; past it they are
            delivered at once (their open ancestors' spans are started for them).
        max_pending_seconds: the longest an ended run waits for its root: a run that
            ends later than this after the oldest waiting one delivers them all.

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
        max_pending_spans: int = 256,
        max_pending_seconds: float = 5.0,
    ) -> None:
        super().__init__(max_open_runs=max_open_runs)
        if max_content_chars < 16:
            raise ConfigurationError("max_content_chars", "must be at least 16")
        if max_pending_spans < 1:
            raise ConfigurationError("max_pending_spans", "must be at least 1")
        if not max_pending_seconds >= 0:
            raise ConfigurationError("max_pending_seconds", "must be a number >= 0")
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer("oscar_langchain")
        self._fast = FastSpans.create(provider, self._tracer)
        self._metrics = ga.GenAIMetrics(meter_provider) if meter_provider is not None else None
        self.capture_content = capture_content
        self.max_content_chars = max_content_chars
        self.max_pending_spans = max_pending_spans
        self.max_pending_seconds = max_pending_seconds
        self._max_wait_ns = int(max_pending_seconds * 1e9)
        self._runs: dict[RunKey, _Run] = {}
        self._ended: deque[_Run] = deque()
        # Re-entrant: an exporter that itself runs a traced chain must not deadlock.
        self._flush_lock = threading.RLock()
        _flush_at_exit_before_providers(self)

    @property
    def pending_spans(self) -> int:
        """Ended runs whose spans wait for their root (bounded by ``max_pending_spans``)."""
        return len(self._ended)

    # -- recording ------------------------------------------------------------------------
    def _open(
        self,
        run_id: RunKey,
        name: str,
        parent_run_id: RunKey | None,
        kind: SpanKind,
        attributes: dict[str, AttributeValue] | None,
    ) -> _Run:
        runs = self._runs
        parent = runs.get(parent_run_id) if parent_run_id is not None else None
        run = _Run(name, kind, parent, attributes)
        if parent is None:
            run.caller = trace.get_current_span()
        if self._fast is None:
            # start_span's path: start now, in the run's own context, as processors acting
            # on on_start (or other providers) expect; ended in _close.
            parent_span = parent.span if parent is not None else run.caller
            run.span = self._sdk_start(name, parent_span, kind, attributes, run.start)
        runs[run_id] = run
        if len(runs) > self.max_open_runs:
            self._evict_runs(runs)
        return run

    def _evict_runs(self, runs: dict[RunKey, _Run]) -> None:
        """End the oldest open runs (marked ``oscar.evicted``) until within the cap."""
        while len(runs) > self.max_open_runs:
            try:
                oldest = runs.pop(next(iter(runs)))
            except (StopIteration, KeyError, RuntimeError):  # raced with another thread
                return
            oldest.set("oscar.evicted", True)
            self._close(oldest)

    def _close(self, run: _Run) -> None:
        """``run`` ended: queue its span, delivered once no ancestor is open."""
        end = run.end = _time_ns()
        if self._fast is None:  # started in _open: end it now
            span = run.span
            if span is not None:
                _finish(run, span, None)
            return
        ended = self._ended
        ended.append(run)
        parent = run.parent
        if (
            parent is None
            or parent.end
            or len(ended) >= self.max_pending_spans
            or self._waited_too_long(ended, end)
        ):
            self.flush()

    def _waited_too_long(self, ended: deque[_Run], now: int) -> bool:
        """Whether the oldest waiting run ended over ``max_pending_seconds`` before ``now``."""
        try:
            oldest = ended[0]
        except IndexError:  # another thread has just delivered them all
            return False
        return now - oldest.end > self._max_wait_ns

    # -- building ---------------------------------------------------------------------
    def flush(self) -> None:
        """Build and end the spans of every ended run now (in the order they ended).

        Spans are started under a lock (each run's, and its ancestors', exactly once) and
        ended, which exports them, after it is released.
        """
        ready: list[tuple[_Run, trace.Span]] = []  # started spans, ended outside the lock
        batch: list[ReadableSpan] | None = None  # direct spans, exported together
        export: ExportBatch | None = None
        with self._flush_lock:
            ended = self._ended
            if not ended:
                return
            start: _Start = self._sdk_start
            fast = self._fast
            try:
                if fast is not None and fast.still_valid:
                    start, export = fast.start, fast.export_batch
                    if export is not None:
                        batch = []
            except Exception as exc:  # noqa: BLE001 - counted, logged; start_span serves
                self._failed("flush", exc)
            while ended:
                run = ended.popleft()
                try:
                    span = run.span  # set if it was started as an earlier run's ancestor
                    if span is None:
                        parent = run.parent
                        if parent is not None and parent.span is not None:  # the usual case
                            span = run.span = start(
                                run.name, parent.span, run.kind, run.start_attributes, run.start
                            )
                        else:
                            span = self._start_with_ancestors(run, start)
                    ready.append((run, span))
                except Exception as exc:  # noqa: BLE001 - counted, logged; the rest go on
                    self._failed("flush", exc)
        for run, span in ready:
            try:
                _finish(run, span, batch)
            except Exception as exc:  # noqa: BLE001 - counted, logged; the rest go on
                self._failed("flush", exc)
        if batch and export is not None:
            try:
                export(batch)
            except Exception as exc:  # noqa: BLE001 - counted, logged
                self._failed("flush", exc)

    def _start_with_ancestors(self, run: _Run, start: _Start) -> trace.Span:
        """Start ``run``'s span, and first those of its ancestors not started yet."""
        unstarted = []
        walk: _Run | None = run
        while walk is not None and walk.span is None:
            unstarted.append(walk)
            walk = walk.parent
        for pending in reversed(unstarted):  # outermost first: each parent exists
            parent = pending.parent.span if pending.parent is not None else pending.caller
            pending.span = start(
                pending.name, parent, pending.kind, pending.start_attributes, pending.start
            )
        span = run.span
        assert span is not None
        return span

    def _sdk_start(
        self,
        name: str,
        parent: trace.Span | None,
        kind: SpanKind,
        attributes: dict[str, AttributeValue] | None,
        start_time: int,
    ) -> trace.Span:
        context = trace.set_span_in_context(parent) if parent is not None else None
        return self._tracer.start_span(
            name, context=context, kind=kind, attributes=attributes, start_time=start_time
        )

    # -- LangChain's events, through SafeHandler's hooks -------------------------------
    def _run_start(
        self, run_type: str, run_id: RunKey, parent_run_id: RunKey | None, name: str, inputs: Any
    ) -> None:
        # Chains, the bulk of runs, carry no attribute: an empty start is the fast path.
        attributes: dict[str, AttributeValue] | None = None
        if run_type != "chain":
            attributes = {ga.RUN_TYPE: run_type}
            if run_type == "tool":
                attributes[ga.OPERATION] = "execute_tool"
                attributes[ga.TOOL_NAME] = name
        if self.capture_content:
            attributes = attributes or {}
            attributes[ga.INPUT] = ga.content_text(inputs, self.max_content_chars)
        self._open(run_id, name, parent_run_id, _INTERNAL, attributes)

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
        run = self._open(run_id, span_name, parent_run_id, _CLIENT, attributes)
        run.metric_attrs = metric_attrs
        run.t0 = time.perf_counter()

    def _token(self, run_id: RunKey) -> None:
        run = self._runs.get(run_id)
        if run is not None and not run.streamed:
            run.streamed = True
            run.set(ga.TTFT, time.perf_counter() - run.t0)

    def _run_end(self, run_id: RunKey, outputs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        if self.capture_content:
            run.set(ga.OUTPUT, ga.content_text(outputs, self.max_content_chars))
        self._close(run)

    def _model_end(self, run_id: RunKey, response: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        usage = llm_usage(response)
        if usage.response_model:
            run.set(ga.RESPONSE_MODEL, usage.response_model)
        if usage.finish_reasons:
            run.set(ga.FINISH_REASONS, usage.finish_reasons)
        if usage.input_tokens is not None:
            run.set(ga.INPUT_TOKENS, usage.input_tokens)
        if usage.output_tokens is not None:
            run.set(ga.OUTPUT_TOKENS, usage.output_tokens)
        if self.capture_content and usage.texts:
            run.set(
                ga.OUTPUT_MESSAGES,
                ga.content_text(
                    [{"role": "assistant", "content": t} for t in usage.texts],
                    self.max_content_chars,
                ),
            )
        self._close(run)
        if self._metrics is not None and run.metric_attrs is not None:
            metric_attrs = run.metric_attrs
            if usage.response_model:
                metric_attrs = {**metric_attrs, ga.RESPONSE_MODEL: usage.response_model}
            self._metrics.record(
                metric_attrs,
                time.perf_counter() - run.t0,
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
        run.set(ga.ERROR_TYPE, error_type)
        event = {
            "exception.type": error_type,
            "exception.message": message,
            "exception.stacktrace": truncate(redact(stack), self.max_content_chars),
        }
        run.events = [("exception", event, _time_ns())]
        run.status = Status(StatusCode.ERROR, message)
        self._close(run)
        if self._metrics is not None and run.metric_attrs is not None:
            self._metrics.record(
                {**run.metric_attrs, ga.ERROR_TYPE: error_type}, time.perf_counter() - run.t0
            )

    def _custom(self, name: str, data: Any, run_id: RunKey) -> None:
        if name != ANNOTATION_EVENT or not isinstance(data, Mapping):
            return
        run = self._runs.get(run_id)
        if run is not None:
            run.update(ga.safe_attributes(data))


def _finish(run: _Run, span: trace.Span, batch: list[ReadableSpan] | None) -> None:
    """Give ``span`` what happened to ``run`` after its start, then end it at its end.

    A direct span goes to ``batch`` (when given) instead of the processors.
    """
    if run.late:
        span.set_attributes(run.late)
    for name, attributes, timestamp in run.events or ():
        span.add_event(name, attributes, timestamp)
    if run.status is not None:
        span.set_status(run.status)
    if batch is not None and type(span) is FastSpan:
        span.end_into(batch, run.end)
    else:
        span.end(run.end)


_LIVE: weakref.WeakSet[OscarTracer] = weakref.WeakSet()


def _flush_live_tracers() -> None:
    """At exit: deliver the ended runs that live tracers still hold for an open root."""
    for tracer in list(_LIVE):
        tracer.flush()


def _flush_at_exit_before_providers(tracer: OscarTracer) -> None:
    """Have ``tracer`` flushed at exit, before the tracer providers made so far shut down.

    The SDK's ``TracerProvider`` shuts down in an ``atexit`` hook registered when it is
    made; hooks run last-registered first, so the one flush hook is moved to the end of
    the list each time a tracer is made (one registration, whatever the number of tracers).
    """
    _LIVE.add(tracer)
    atexit.unregister(_flush_live_tracers)
    atexit.register(_flush_live_tracers)
