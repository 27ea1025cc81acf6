"""A cheaper way to make the OpenTelemetry SDK's spans, used only where it is equivalent.

``Tracer.start_span`` + ``Span.end`` cost ~10 µs per span, and about three times that
inside a LangChain chain (the SDK's allocation-heavy path runs cold between LangChain's
frames). Most of it builds a mutable ``_Span`` (locks, bounded attribute and event
containers) that nothing reads until its ``ReadableSpan`` copy reaches the processors'
``on_end``. :class:`FastSpans` skips that when the outcome is provably the same:

* the provider is the SDK's ``TracerProvider`` with its default synchronous processor
  list, every processor's ``on_start`` and ``_on_ending`` is a no-op (``Simple`` and
  ``BatchSpanProcessor``, the ones exporters use), the tracer is enabled and the SDK's
  own self-metrics are off;
* then each span is decided exactly as ``start_span`` decides it (the provider's
  sampler, id generator, trace flags and trace state) and, when it ends, a run that
  got no attribute, event or status is handed to the processors as a ``ReadableSpan``
  built directly; one that did is materialised as the SDK's own ``_Span`` (same limits,
  same validation), started at its recorded start time, then ended.

Anything else (another provider, a processor acting on ``on_start``, SDK internals
that moved) makes :meth:`FastSpans.create` return ``None`` and the tracer uses
``start_span`` as usual. The SDK's private names it relies on were checked, by the
tests in ``tests/unit_tests/callbacks/test_tracer_fast.py``, against the versions in
:data:`TESTED_SDK`; any other SDK version gets ``start_span`` (correct, slower).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.sdk.trace import (
    ReadableSpan,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    Tracer,
    TracerProvider,
)
from opentelemetry.sdk.trace import _Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision, ParentBased
from opentelemetry.sdk.version import __version__ as _SDK_VERSION
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util.types import Attributes, AttributeValue

__all__ = ["TESTED_SDK", "FastSpan", "FastSpans", "sdk_supported"]

TESTED_SDK = ((1, 42), (1, 45))
"""The opentelemetry-sdk minor versions (first, last) the direct path was checked against."""


def sdk_supported(version: str) -> bool:
    """Whether opentelemetry-sdk ``version`` is within :data:`TESTED_SDK`.

    Example:
        >>> sdk_supported("1.44.0"), sdk_supported("1.30.0"), sdk_supported("2.0.0")
        (True, False, False)
    """
    try:
        minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    first, last = TESTED_SDK
    return first <= minor <= last


def _sdk_internals() -> tuple[type[Any], type[Any], frozenset[tuple[Any, Any]]] | None:
    """The SDK's no-op self-metrics classes (tracer, processor) and no-op processor hooks."""
    if not sdk_supported(_SDK_VERSION):
        return None
    try:
        from opentelemetry.sdk._shared_internal._processor_metrics import NoOpProcessorMetrics
        from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics

        hooks = frozenset(
            (cls.on_start, cls._on_ending)
            for cls in (SpanProcessor, SimpleSpanProcessor, BatchSpanProcessor)
        )
    except (ImportError, AttributeError):  # internals moved: start_span it is
        return None
    return NoOpTracerMetrics, NoOpProcessorMetrics, hooks


_INTERNALS = _sdk_internals()
_EXPORT_LOGGER = logging.getLogger(SimpleSpanProcessor.__module__)
"""The logger ``SimpleSpanProcessor`` reports export failures on."""

ExportBatch = Callable[[list[ReadableSpan]], None]
"""Hands ended spans, in the order they ended, to the processor in one export."""

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags.SAMPLED
# The W3C random-trace-id flag (API >= 1.42); older APIs never take the direct path.
_RANDOM: int = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)
_SAMPLED_ONLY = TraceFlags(_SAMPLED)
_SAMPLED_RANDOM = TraceFlags(_SAMPLED | _RANDOM)
_INTERNAL = SpanKind.INTERNAL
_EMPTY_STATE = trace.DEFAULT_TRACE_STATE


def _quiet_processors(processors: Sequence[SpanProcessor], hooks: frozenset[Any]) -> bool:
    # getattr: a duck-typed processor without _on_ending is simply not a quiet one.
    return all(
        (type(p).on_start, getattr(type(p), "_on_ending", None)) in hooks for p in processors
    )


class FastSpans:
    """Makes :class:`FastSpan` s for one SDK tracer; see the module docstring."""

    def __init__(
        self, tracer: Tracer, processor: SynchronousMultiSpanProcessor, hooks: frozenset[Any]
    ) -> None:
        self._tracer = tracer
        self._hooks = hooks
        self._processor = processor
        self._sampler = tracer.sampler
        self._ids = tracer.id_generator
        self._known: tuple[SpanProcessor, ...] = processor._span_processors
        sampler = self._sampler
        # The default ParentBased sampler: a child of a sampled local parent is sampled.
        self._local_children_sampled = (
            type(sampler) is ParentBased
            and sampler._local_parent_sampled is ALWAYS_ON
            and sampler._local_parent_not_sampled is ALWAYS_OFF
        )
        # ParentBased(ALWAYS_ON), the SDK's default: a span with no parent is sampled.
        self._roots_sampled = type(sampler) is ParentBased and sampler._root is ALWAYS_ON
        self.on_end = self._on_end_for(self._known)
        self.export_batch = self._export_batch_for(self._known)
        self.resource = tracer.resource
        self.instrumentation_info = tracer.instrumentation_info
        self.instrumentation_scope = tracer._instrumentation_scope

    @classmethod
    def create(cls, provider: Any, tracer: Any) -> FastSpans | None:
        """The fast path for ``tracer`` of ``provider``, or ``None`` where it would differ."""
        if _INTERNALS is None:
            return None
        no_op_metrics, _, hooks = _INTERNALS
        try:
            processor = provider._active_span_processor
            usable = (
                isinstance(provider, TracerProvider)
                and type(tracer) is Tracer
                and type(processor) is SynchronousMultiSpanProcessor
                and tracer.span_processor is processor
                and type(tracer._tracer_metrics) is no_op_metrics
                and tracer._is_enabled()
                and _quiet_processors(processor._span_processors, hooks)
            )
        except AttributeError:  # another SDK version: use start_span
            return None
        return cls(tracer, processor, hooks) if usable else None

    @property
    def still_valid(self) -> bool:
        """False once processors were added (they may act on ``on_start``)."""
        current = self._processor._span_processors
        if current is self._known:
            return True
        if _quiet_processors(current, self._hooks):
            self._known = current
            self.on_end = self._on_end_for(current)
            self.export_batch = self._export_batch_for(current)
            return True
        # Spans still open reach every processor.
        self.on_end = self._processor.on_end
        self.export_batch = None
        return False

    def _on_end_for(self, processors: tuple[SpanProcessor, ...]) -> Callable[[ReadableSpan], None]:
        """What ``SynchronousMultiSpanProcessor.on_end`` calls: the one processor's own."""
        return processors[0].on_end if len(processors) == 1 else self._processor.on_end

    def _export_batch_for(self, processors: tuple[SpanProcessor, ...]) -> ExportBatch | None:
        """One export for many spans, where that is all ``on_end`` for each would do.

        A lone ``SimpleSpanProcessor`` with its self-metrics off (the SDK's default) does
        nothing per span but export it: its spans can go to the exporter in one
        ``export`` call, under the same instrumentation suppression, with export failures
        logged on the same logger.
        """
        if _INTERNALS is None or len(processors) != 1:
            return None
        processor = processors[0]
        if (
            type(processor) is not SimpleSpanProcessor
            or type(getattr(processor, "_metrics", None)) is not (_INTERNALS[1])
        ):
            return None
        return lambda spans: _export(processor, spans)

    def start(
        self,
        name: str,
        parent: trace.Span | None,
        kind: SpanKind = _INTERNAL,
        attributes: Mapping[str, AttributeValue] | None = None,
        start_time: int | None = None,
    ) -> FastSpan:
        """Start a span as ``Tracer.start_span`` would under ``parent``.

        Args:
            name: the span name.
            parent: the parent span (``None``: the caller's current span, if any).
            kind: the span kind.
            attributes: attributes at start.
            start_time: the start in ns since the epoch (default: now).
        """
        start = start_time if start_time is not None else time.time_ns()
        parent_context = (
            parent.get_span_context()
            if parent is not None
            else trace.get_current_span().get_span_context()
        )
        # SpanContext is a tuple: unpacking it skips five property calls.
        trace_id, _, remote, parent_flags, trace_state, valid = parent_context
        ids = self._ids
        if valid:
            random_id = parent_flags & _RANDOM
        else:
            trace_id = ids.generate_trace_id()
            random_id = ids.is_trace_id_random()
        if (
            self._local_children_sampled and not remote and parent_flags & _SAMPLED
            if valid
            else self._roots_sampled
        ):
            # What ParentBased decides for a sampled local parent (ALWAYS_ON) or for no
            # parent (its root sampler, ALWAYS_ON: no attributes, an empty trace state),
            # without the calls.
            flags = _SAMPLED_RANDOM if random_id else _SAMPLED_ONLY
            state: TraceState | None = trace_state if valid else _EMPTY_STATE
            start_attributes = dict(attributes) if attributes else None
            recording = True
        else:
            # As start_span: the sampler sees the context the span was asked for in.
            otel_context = trace.set_span_in_context(parent) if parent is not None else None
            result = self._sampler.should_sample(otel_context, trace_id, name, kind, attributes, ())
            sampled = result.decision is Decision.RECORD_AND_SAMPLE
            flags = TraceFlags(
                (_SAMPLED if sampled else TraceFlags.DEFAULT) | (_RANDOM if random_id else 0)
            )
            state = result.trace_state
            start_attributes = {**result.attributes, **(attributes or {})} or None
            recording = result.decision is not Decision.DROP
        context = SpanContext(trace_id, ids.generate_span_id(), False, flags, state)
        return FastSpan(
            self,
            name,
            context,
            parent_context if valid else None,
            kind,
            start_attributes,
            recording,
            start,
        )

    def materialise(
        self, span: FastSpan, end_time: int, into: list[ReadableSpan] | None = None
    ) -> None:
        """End ``span`` through the SDK's own ``_Span`` (it got attributes or events).

        With ``into``, the ended span is appended there instead of reaching the
        processors (whose ``on_start`` and ``_on_ending`` are no-ops: see ``create``).
        """
        tracer = self._tracer
        sdk_span = SdkSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            sampler=self._sampler,
            resource=tracer.resource,
            attributes=span.start_attributes,
            span_processor=self._processor if into is None else _Collect(into),
            kind=span.kind,
            instrumentation_info=tracer.instrumentation_info,
            limits=tracer._span_limits,
            instrumentation_scope=tracer._instrumentation_scope,
        )
        sdk_span.start(start_time=span.start_time)
        for apply in span.changes or ():
            apply(sdk_span)
        sdk_span.end(end_time=end_time)


def _export(processor: SimpleSpanProcessor, spans: list[ReadableSpan]) -> None:
    """What ``processor.on_end`` does for each of ``spans``, in one ``export`` call."""
    sampled = tuple(s for s in spans if s.context is not None and s.context.trace_flags.sampled)
    if not sampled:
        return
    if getattr(processor, "_shutdown", False):
        _EXPORT_LOGGER.warning("Processor is already shutdown, ignoring call")
        return
    token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        processor.span_exporter.export(sampled)
    except Exception:  # logged, as SimpleSpanProcessor does
        _EXPORT_LOGGER.exception("Exception while exporting Span.")
    finally:
        detach(token)


class _Collect(SpanProcessor):
    """A span processor for one ``_Span`` that keeps it once ended.

    Its ``on_start`` and ``_on_ending`` are the base class's no-ops, as the real
    processors' are wherever it is used.
    """

    def __init__(self, into: list[ReadableSpan]) -> None:
        self._into = into

    def on_end(self, span: ReadableSpan) -> None:
        """Keep the ended span."""
        self._into.append(span)


class FastSpan(trace.Span, ReadableSpan):
    """A span whose SDK objects are built only if it needs them (see :class:`FastSpans`).

    A span that ends with no attribute, event or status is itself the ``ReadableSpan``
    the processors receive; anything set on it is replayed on an SDK ``_Span`` at its
    end. After :meth:`end` it is immutable, as the SDK's spans are.
    """

    def __init__(  # noqa: PLR0917 - internal, one call site
        self,
        maker: FastSpans,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, AttributeValue] | None,
        recording: bool,
        start_time: int,
    ) -> None:
        # ReadableSpan's fields, set directly (its __init__ would build an empty Resource);
        # the ones every new span shares are class attributes below.
        self._name = name
        self._context = context
        self._kind = kind
        self._parent = parent
        self._start_time = start_time
        self._instrumentation_info = maker.instrumentation_info
        self._instrumentation_scope = maker.instrumentation_scope
        self._resource = maker.resource
        self.maker = maker
        self.start_attributes = attributes
        self.recording = recording

    _end_time: int | None = None
    _attributes = None
    _events = ()
    _links = ()
    _status = _UNSET
    changes: list[Callable[[SdkSpan], None]] | None = None

    def _change(self, apply: Callable[[SdkSpan], None]) -> None:
        if self.recording and self._end_time is None:
            if self.changes is None:
                self.changes = []
            self.changes.append(apply)

    def end(self, end_time: int | None = None) -> None:
        """Hand the span to the processors (once)."""
        self._end(end_time if end_time is not None else time.time_ns(), None)

    def end_into(self, into: list[ReadableSpan], end_time: int) -> None:
        """End the span (once), appending what the processors would get to ``into``."""
        self._end(end_time, into)

    def _end(self, end: int, into: list[ReadableSpan] | None) -> None:
        if self._end_time is not None:
            return
        self._end_time = end
        if not self.recording:
            return
        if self.changes is not None or self.start_attributes is not None:
            self.maker.materialise(self, end, into)
        elif into is None:
            self.maker.on_end(self)
        else:
            into.append(self)

    def get_span_context(self) -> SpanContext:
        """The span's context (ids, flags, trace state)."""
        return self._context  # type: ignore[return-value]  # a SpanContext, set at start

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Set attributes (validated by the SDK when the span ends)."""
        items = dict(attributes)
        self._change(lambda s: s.set_attributes(items))

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute."""
        self._change(lambda s: s.set_attribute(key, value))

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        """Add an event, stamped now unless ``timestamp`` is given."""
        at = timestamp if timestamp is not None else time.time_ns()
        self._change(lambda s: s.add_event(name, attributes, at))

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        """Add a link."""
        self._change(lambda s: s.add_link(context, attributes))

    def update_name(self, name: str) -> None:
        """Rename the span."""
        self._change(lambda s: s.update_name(name))

    def is_recording(self) -> bool:
        """True until ended, for sampled (or record-only) spans."""
        return self.recording and self._end_time is None

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """Set the status."""
        self._change(lambda s: s.set_status(status, description))

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """Record ``exception`` as an event (as the SDK does)."""
        at = timestamp if timestamp is not None else time.time_ns()
        self._change(lambda s: s.record_exception(exception, attributes, at, escaped))
