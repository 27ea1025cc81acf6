"""One call to install the tracer, the performance stats and the error aggregation.

:func:`oscar_callbacks` builds the three handlers and drives them through one
:class:`~oscar_langchain.callbacks.combined.CombinedHandler`, so LangChain dispatches
each event once. Pass ``cb.handlers`` in ``config["callbacks"]``, or observe every run
in a block with ``with cb.installed():``.
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

from oscar_langchain.callbacks.combined import CombinedHandler
from oscar_langchain.callbacks.error_aggregator import ErrorAggregator, HealthThresholds
from oscar_langchain.callbacks.errors_handler import ErrorCallbackHandler
from oscar_langchain.callbacks.stats import PerformanceStats, default_stats
from oscar_langchain.callbacks.stats_handler import PerformanceCallbackHandler
from oscar_langchain.callbacks.tracer import OscarTracer

__all__ = ["OscarCallbacks", "oscar_callbacks"]

# LangChain's configure step adds the handler this holds to every run in the context.
_INSTALLED: ContextVar[CombinedHandler | None] = ContextVar("oscar_callbacks", default=None)
register_configure_hook(_INSTALLED, inheritable=True)


@dataclass(frozen=True)
class OscarCallbacks:
    """The three handlers together, with their cores at hand.

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

    tracer: OscarTracer
    performance: PerformanceCallbackHandler
    errors_handler: ErrorCallbackHandler
    handler: CombinedHandler
    """One handler driving the three (what :attr:`handlers` holds)."""

    @property
    def handlers(self) -> list[BaseCallbackHandler]:
        """For ``config={"callbacks": cb.handlers}``: the combined handler."""
        return [self.handler]

    @property
    def internal_errors(self) -> int:
        """Internal failures of the three handlers (logged, never raised)."""
        return sum(h.internal_errors for h in (self.tracer, self.performance, self.errors_handler))

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
        token = _INSTALLED.set(self.handler)
        try:
            yield self
        finally:
            _INSTALLED.reset(token)


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
    tracer = OscarTracer(tracer_provider, meter_provider, capture_content=capture_content)
    performance = PerformanceCallbackHandler(stats if stats is not None else default_stats())
    errors = ErrorCallbackHandler(
        aggregator if aggregator is not None else ErrorAggregator(thresholds)
    )
    return OscarCallbacks(
        tracer, performance, errors, CombinedHandler([tracer, performance, errors])
    )
