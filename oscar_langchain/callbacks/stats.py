"""Performance statistics in bounded memory: latency quantiles, TTFT, tokens, cost.

:class:`PerformanceStats` is the pure core that every source feeds: the LangChain
handler (:class:`~oscar_langchain.callbacks.PerformanceCallbackHandler`) and plain
Python code through :func:`~oscar_langchain.callbacks.trace_performance` /
:func:`~oscar_langchain.callbacks.trace_block`. Each record goes to its component
(run name) and, when known, to its model. Latencies live in quantile sketches, and
the number of series is capped (extra names share one ``(other)`` series), so memory
is bounded whatever the traffic. One lock guards updates; it is held for a few dict
operations only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from oscar_langchain.callbacks._sketch import QuantileSketch
from oscar_langchain.errors import ConfigurationError

__all__ = ["OTHER", "PerformanceStats", "SeriesStats", "StatsSnapshot", "default_stats"]

OTHER = "(other)"
"""Series that collects names beyond ``max_series``."""


@dataclass(frozen=True)
class SeriesStats:
    """Statistics of one component or model (times in seconds, cost in USD)."""

    name: str
    count: int
    errors: int
    p50: float
    p95: float
    p99: float
    mean: float
    ttft_p50: float | None
    ttft_p95: float | None
    input_tokens: int
    output_tokens: int
    cost: float | None
    throughput: float
    """Runs per second between the first start and the last end seen."""

    @property
    def error_rate(self) -> float:
        """Share of runs that failed."""
        return self.errors / self.count if self.count else 0.0


@dataclass(frozen=True)
class StatsSnapshot:
    """A point-in-time copy of all statistics, as plain data."""

    components: dict[str, SeriesStats] = field(default_factory=dict)
    models: dict[str, SeriesStats] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as nested dicts (JSON-ready)."""
        return {
            "components": {k: asdict(v) for k, v in self.components.items()},
            "models": {k: asdict(v) for k, v in self.models.items()},
        }


Sample = tuple[float, bool, "float | None", int, int, "float | None"]
"""(duration, error, ttft, input_tokens, output_tokens, cost) of one run."""


class _Series:
    __slots__ = (
        "accuracy",
        "cost",
        "errors",
        "first",
        "input_tokens",
        "last",
        "latency",
        "max_bins",
        "output_tokens",
        "ttft",
    )

    def __init__(self, accuracy: float, max_bins: int, start: float) -> None:
        self.accuracy = accuracy
        self.max_bins = max_bins
        self.latency = QuantileSketch(accuracy, max_bins)
        self.ttft: QuantileSketch | None = None
        self.errors = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost: float | None = None
        self.first = start
        self.last = start

    def add(self, now: float, sample: Sample) -> None:
        duration, error, ttft, input_tokens, output_tokens, cost = sample
        self.latency.add(duration)
        if error:
            self.errors += 1
        if ttft is not None:
            if self.ttft is None:
                self.ttft = QuantileSketch(self.accuracy, self.max_bins)
            self.ttft.add(ttft)
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost
        self.first = min(self.first, now - duration)
        self.last = max(self.last, now)

    def freeze(self, name: str) -> SeriesStats:
        lat, ttft = self.latency, self.ttft
        span = self.last - self.first
        return SeriesStats(
            name=name,
            count=lat.count,
            errors=self.errors,
            p50=lat.quantile(0.5),
            p95=lat.quantile(0.95),
            p99=lat.quantile(0.99),
            mean=lat.mean,
            ttft_p50=ttft.quantile(0.5) if ttft else None,
            ttft_p95=ttft.quantile(0.95) if ttft else None,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost=self.cost,
            throughput=lat.count / span if span > 0 else 0.0,
        )


class PerformanceStats:
    """Thread-safe, bounded-memory statistics per component and per model.

    Args:
        clock: seconds, monotonic (``time.perf_counter`` by default); injected in tests.
        max_series: the most component names (and, separately, model names) tracked
            one by one; further names share the ``(other)`` series.
        relative_accuracy: relative error of the reported quantiles.
        max_bins: buckets per quantile sketch.

    Example:
        >>> ticks = iter([0.0, 10.0])
        >>> stats = PerformanceStats(clock=lambda: next(ticks))
        >>> stats.record("llm", 0.5, model="gpt-4o", input_tokens=12, output_tokens=3)
        >>> snap = stats.snapshot()
        >>> snap.components["llm"].count, snap.models["gpt-4o"].input_tokens
        (1, 12)
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.perf_counter,
        max_series: int = 1000,
        relative_accuracy: float = 0.01,
        max_bins: int = 2048,
    ) -> None:
        if max_series < 1:
            raise ConfigurationError("max_series", "must be at least 1")
        QuantileSketch(relative_accuracy, max_bins)  # validates both
        self.clock = clock
        self._max_series = max_series
        self._accuracy = relative_accuracy
        self._max_bins = max_bins
        self._lock = threading.Lock()
        self._components: dict[str, _Series] = {}
        self._models: dict[str, _Series] = {}

    def _series(self, table: dict[str, _Series], name: str, now: float) -> _Series:
        series = table.get(name)
        if series is None:
            if len(table) >= self._max_series - 1:
                name = OTHER
                series = table.get(OTHER)
            if series is None:
                series = table[name] = _Series(self._accuracy, self._max_bins, now)
        return series

    def record(
        self,
        name: str,
        duration: float,
        *,
        model: str | None = None,
        error: bool = False,
        ttft: float | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost: float | None = None,
    ) -> None:
        """Record one finished run of ``name`` that took ``duration`` seconds."""
        now = self.clock()
        sample: Sample = (duration, error, ttft, input_tokens, output_tokens, cost)
        with self._lock:
            self._series(self._components, name, now).add(now, sample)
            if model is not None:
                self._series(self._models, model, now).add(now, sample)

    @property
    def series_count(self) -> int:
        """How many series are held (bounded by ``2 * max_series``)."""
        return len(self._components) + len(self._models)

    def snapshot(self) -> StatsSnapshot:
        """A consistent copy of every series."""
        with self._lock:
            return StatsSnapshot(
                components={k: s.freeze(k) for k, s in self._components.items()},
                models={k: s.freeze(k) for k, s in self._models.items()},
            )

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._components.clear()
            self._models.clear()

    def report(self) -> str:
        """A readable table: one row per component, then one per model."""
        snap = self.snapshot()
        return format_table(snap)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def format_table(snap: StatsSnapshot) -> str:
    """Render a :class:`StatsSnapshot` as a fixed-width text table."""
    header = (
        f"{'name':<28} {'runs':>6} {'err':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'ttft ms':>8} {'tok in':>7} {'tok out':>7} {'cost $':>9} {'runs/s':>8}"
    )
    lines = [header, "-" * len(header)]
    for title, table in (("components", snap.components), ("models", snap.models)):
        if not table:
            continue
        lines.append(f"[{title}]")
        for s in sorted(table.values(), key=lambda s: -s.count):
            cost = "-" if s.cost is None else f"{s.cost:.5f}"
            lines.append(
                f"{s.name[:28]:<28} {s.count:>6} {s.errors:>4} {_ms(s.p50):>8} {_ms(s.p95):>8} "
                f"{_ms(s.p99):>8} {_ms(s.ttft_p50):>8} {s.input_tokens:>7} "
                f"{s.output_tokens:>7} {cost:>9} {s.throughput:>8.1f}"
            )
    return "\n".join(lines)


_DEFAULT: PerformanceStats | None = None
_DEFAULT_LOCK = threading.Lock()


def default_stats() -> PerformanceStats:
    """The process-wide stats that handlers and decorators share unless given their own."""
    global _DEFAULT  # noqa: PLW0603 - one shared default for the process
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = PerformanceStats()
        return _DEFAULT
