"""One call to install the tracer, the performance stats and the error aggregation.

Example:
    >>> from langchain_core.runnables import RunnableLambda
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> cb = oscar_callbacks(tracer_provider=TracerProvider(), stats=PerformanceStats())
    >>> RunnableLambda(lambda x: x * 2).invoke(3, {"callbacks": cb.handlers})
    6
    >>> cb.stats.snapshot().components["RunnableLambda"].count
    1
    >>> with cb.installed():  # every run in this block, no config needed
    ...     RunnableLambda(lambda x: x * 2).invoke(4)
    8
    >>> cb.stats.snapshot().components["RunnableLambda"].count
    2
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.tracers.context import register_configure_hook
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from oscar_langchain.callbacks.error_aggregator import ErrorAggregator, HealthThresholds
from oscar_langchain.callbacks.errors_handler import ErrorCallbackHandler
from oscar_langchain.callbacks.stats import PerformanceStats, default_stats
from oscar_langchain.callbacks.stats_handler import PerformanceCallbackHandler
from oscar_langchain.callbacks.tracer import OscarTracer

__all__ = ["OscarCallbacks", "oscar_callbacks"]

# One slot per handler kind; LangChain's configure step adds whatever they hold to every run.
_TRACER_VAR: ContextVar[OscarTracer | None] = ContextVar("oscar_tracer", default=None)
_STATS_VAR: ContextVar[PerformanceCallbackHandler | None] = ContextVar("oscar_stats", default=None)
_ERRORS_VAR: ContextVar[ErrorCallbackHandler | None] = ContextVar("oscar_errors", default=None)
for _var in (_TRACER_VAR, _STATS_VAR, _ERRORS_VAR):
    register_configure_hook(_var, inheritable=True)


@dataclass(frozen=True)
class OscarCallbacks:
    """The three handlers together, with their cores at hand."""

    tracer: OscarTracer
    performance: PerformanceCallbackHandler
    errors_handler: ErrorCallbackHandler

    @property
    def handlers(self) -> list[BaseCallbackHandler]:
        """The handlers, for ``config={"callbacks": cb.handlers}``."""
        return [self.tracer, self.performance, self.errors_handler]

    @property
    def stats(self) -> PerformanceStats:
        """The performance statistics."""
        return self.performance.stats

    @property
    def errors(self) -> ErrorAggregator:
        """The error aggregator."""
        return self.errors_handler.aggregator

    @contextmanager
    def installed(self) -> Iterator[OscarCallbacks]:
        """Within the block, every LangChain run (in this context) is observed."""
        tokens = (
            _TRACER_VAR.set(self.tracer),
            _STATS_VAR.set(self.performance),
            _ERRORS_VAR.set(self.errors_handler),
        )
        try:
            yield self
        finally:
            _ERRORS_VAR.reset(tokens[2])
            _STATS_VAR.reset(tokens[1])
            _TRACER_VAR.reset(tokens[0])


def oscar_callbacks(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    capture_content: bool = False,
    stats: PerformanceStats | None = None,
    thresholds: HealthThresholds | None = None,
    aggregator: ErrorAggregator | None = None,
) -> OscarCallbacks:
    """Build the tracer, the stats handler and the error handler in one go.

    Args:
        tracer_provider: for the spans (default: the global one).
        meter_provider: for the GenAI metrics (none recorded without it).
        capture_content: record prompts and completions (redacted) on spans.
        stats: the performance stats (default: :func:`default_stats`).
        thresholds: health thresholds for a new aggregator (ignored with ``aggregator``).
        aggregator: an existing error aggregator to feed.
    """
    return OscarCallbacks(
        tracer=OscarTracer(tracer_provider, meter_provider, capture_content=capture_content),
        performance=PerformanceCallbackHandler(stats if stats is not None else default_stats()),
        errors_handler=ErrorCallbackHandler(
            aggregator if aggregator is not None else ErrorAggregator(thresholds)
        ),
    )
