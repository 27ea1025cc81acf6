"""Observability callbacks: OpenTelemetry tracing, performance stats, error aggregation.

Add the handlers to ``config["callbacks"]`` (or install them for a block with
``oscar_callbacks().installed()``) and every LangChain run is observed.
"""

from oscar_langchain.callbacks.combined import CombinedHandler
from oscar_langchain.callbacks.error_aggregator import (
    ErrorAggregator,
    ErrorGroup,
    Health,
    HealthChange,
    HealthThresholds,
)
from oscar_langchain.callbacks.errors_handler import ErrorCallbackHandler
from oscar_langchain.callbacks.install import OscarCallbacks, oscar_callbacks
from oscar_langchain.callbacks.stats import (
    PerformanceStats,
    SeriesStats,
    StatsSnapshot,
    default_stats,
)
from oscar_langchain.callbacks.stats_handler import PerformanceCallbackHandler
from oscar_langchain.callbacks.timing import TraceBlock, trace_block, trace_performance
from oscar_langchain.callbacks.tracer import OscarTracer
from oscar_langchain.callbacks.tree import format_span_tree

__all__ = [
    "CombinedHandler",
    "ErrorAggregator",
    "ErrorCallbackHandler",
    "ErrorGroup",
    "Health",
    "HealthChange",
    "HealthThresholds",
    "OscarCallbacks",
    "OscarTracer",
    "PerformanceCallbackHandler",
    "PerformanceStats",
    "SeriesStats",
    "StatsSnapshot",
    "TraceBlock",
    "default_stats",
    "format_span_tree",
    "oscar_callbacks",
    "trace_block",
    "trace_performance",
]
