"""Error aggregation: groups, counts, redacted samples, sliding-window rates, health.

:class:`ErrorAggregator` is the pure core (no LangChain). Each error is grouped by
``(component, exception type, model, kind)`` where ``kind`` comes from
:func:`oscar_langchain.errors.classify_error`. A group keeps its count, how many of
those were re-raised from a child run (``propagated``), first/last seen and a few
redacted sample messages. Each component's calls and errors over a sliding window give
its error rate and health (``healthy`` / ``degraded`` / ``failing``). Listeners hear of
new groups and of health changes; they run outside the lock and their failures are
logged, never raised. Memory is bounded: groups, components and samples are capped.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oscar_langchain.callbacks._redact import redact, truncate
from oscar_langchain.errors import ConfigurationError, ErrorClassification, classify_error

__all__ = [
    "ErrorAggregator",
    "ErrorGroup",
    "Health",
    "HealthChange",
    "HealthThresholds",
]

logger = logging.getLogger(__name__)

OTHER = "(other)"


class Health(str, enum.Enum):
    """A component's health over the sliding window."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"


@dataclass(frozen=True)
class HealthThresholds:
    """When a component counts as degraded or failing.

    Attributes:
        degraded: error rate at or above which a component is degraded.
        failing: error rate at or above which it is failing.
        min_calls: fewer calls than this in the window always count as healthy.
        window: the sliding window, in seconds.
        buckets: how many time buckets the window is cut into (its resolution).

    Example:
        >>> HealthThresholds(degraded=0.2, failing=0.6).classify(0.3, calls=10)
        <Health.DEGRADED: 'degraded'>
    """

    degraded: float = 0.1
    failing: float = 0.5
    min_calls: int = 5
    window: float = 60.0
    buckets: int = 12

    def __post_init__(self) -> None:
        if not 0.0 < self.degraded <= 1.0:
            raise ConfigurationError("degraded", "must be in (0, 1]")
        if not self.degraded <= self.failing <= 1.0:
            raise ConfigurationError("failing", "must be in [degraded, 1]")
        if self.min_calls < 1:
            raise ConfigurationError("min_calls", "must be at least 1")
        if self.window <= 0:
            raise ConfigurationError("window", "must be positive")
        if self.buckets < 1:
            raise ConfigurationError("buckets", "must be at least 1")

    def classify(self, rate: float, calls: int) -> Health:
        """The health for an error ``rate`` over ``calls`` calls."""
        if calls < self.min_calls or rate < self.degraded:
            return Health.HEALTHY
        return Health.FAILING if rate >= self.failing else Health.DEGRADED


@dataclass(frozen=True)
class ErrorGroup:
    """One group of errors, as plain data (times from the aggregator's clock)."""

    component: str
    error_type: str
    model: str | None
    kind: str
    count: int
    propagated: int
    """How many of ``count`` were re-raised from a child run's same exception."""
    first_seen: float
    last_seen: float
    samples: tuple[str, ...]


@dataclass(frozen=True)
class HealthChange:
    """A component's health moved from ``old`` to ``new`` at ``error_rate``."""

    component: str
    old: Health
    new: Health
    error_rate: float


GroupKey = tuple[str, str, str | None, str]


def _unsubscriber(listeners: list[Any], listener: Any) -> Callable[[], None]:
    def unsubscribe() -> None:
        if listener in listeners:  # calling it twice is harmless
            listeners.remove(listener)

    return unsubscribe


class _Group:
    __slots__ = ("count", "first", "last", "propagated", "samples")

    def __init__(self, now: float, max_samples: int) -> None:
        self.count = 0
        self.propagated = 0
        self.first = now
        self.last = now
        self.samples: deque[str] = deque(maxlen=max_samples)


class _Window:
    """Calls and errors per time bucket over the sliding window (fixed size)."""

    __slots__ = ("calls", "errors", "health", "slots", "width")

    def __init__(self, thresholds: HealthThresholds) -> None:
        n = thresholds.buckets
        self.width = thresholds.window / n
        self.slots = [-1] * n
        self.calls = [0] * n
        self.errors = [0] * n
        self.health = Health.HEALTHY

    def add(self, now: float, error: bool) -> None:
        index = int(now // self.width)
        slot = index % len(self.slots)
        if self.slots[slot] != index:
            self.slots[slot] = index
            self.calls[slot] = self.errors[slot] = 0
        self.calls[slot] += 1
        if error:
            self.errors[slot] += 1

    def totals(self, now: float) -> tuple[int, int]:
        oldest = int(now // self.width) - len(self.slots)
        calls = errors = 0
        for i, index in enumerate(self.slots):
            if index > oldest:
                calls += self.calls[i]
                errors += self.errors[i]
        return calls, errors


class ErrorAggregator:
    """Thread-safe error groups, sliding-window rates and health per component.

    Args:
        thresholds: health thresholds and window.
        clock: seconds (wall time by default, so ``first_seen``/``last_seen`` are Unix
            timestamps); injected in tests.
        classifier: ``exception -> ErrorClassification`` (default: oscar's classifier).
        max_groups: the most groups kept; further ones are merged into one ``(other)``
            group per component-less key.
        max_components: the most components whose health is tracked.
        max_samples: sample messages kept per group (most recent).
        sample_chars: length a sample message is cut to.

    Example:
        >>> ticks = iter(range(100))
        >>> agg = ErrorAggregator(clock=lambda: float(next(ticks)))
        >>> agg.record_error("llm", TimeoutError("read timed out"), model="gpt-4o")
        >>> [(g.component, g.error_type, g.kind, g.count) for g in agg.groups()]
        [('llm', 'TimeoutError', 'timeout', 1)]
    """

    def __init__(
        self,
        thresholds: HealthThresholds | None = None,
        *,
        clock: Callable[[], float] = time.time,
        classifier: Callable[[BaseException], ErrorClassification] = classify_error,
        max_groups: int = 500,
        max_components: int = 1000,
        max_samples: int = 5,
        sample_chars: int = 300,
    ) -> None:
        for name, value in (
            ("max_groups", max_groups),
            ("max_components", max_components),
            ("max_samples", max_samples),
            ("sample_chars", sample_chars),
        ):
            if value < 1:
                raise ConfigurationError(name, "must be at least 1")
        self.thresholds = thresholds or HealthThresholds()
        self.clock = clock
        self._classify = classifier
        self._max_groups = max_groups
        self._max_components = max_components
        self._max_samples = max_samples
        self._sample_chars = sample_chars
        self._lock = threading.Lock()
        self._groups: dict[GroupKey, _Group] = {}
        self._windows: dict[str, _Window] = {}
        self._group_listeners: list[Callable[[ErrorGroup], None]] = []
        self._health_listeners: list[Callable[[HealthChange], None]] = []

    # -- listeners ----------------------------------------------------------------------
    def on_new_group(self, listener: Callable[[ErrorGroup], None]) -> Callable[[], None]:
        """Call ``listener(group)`` when a new error group appears; returns an unsubscriber."""
        self._group_listeners.append(listener)
        return _unsubscriber(self._group_listeners, listener)

    def on_health_change(self, listener: Callable[[HealthChange], None]) -> Callable[[], None]:
        """Call ``listener(change)`` when a component's health changes; returns an unsubscriber."""
        self._health_listeners.append(listener)
        return _unsubscriber(self._health_listeners, listener)

    def _notify(self, listeners: list[Callable[[object], None]], payload: object) -> None:
        for listener in list(listeners):
            try:
                listener(payload)
            except Exception:  # a listener's bug must not stop the others
                logger.exception("error aggregator listener %r failed", listener)

    # -- recording ----------------------------------------------------------------------
    def _window(self, component: str) -> tuple[str, _Window]:
        window = self._windows.get(component)
        if window is None:
            if len(self._windows) >= self._max_components - 1:
                component = OTHER
                window = self._windows.get(OTHER)
            if window is None:
                window = self._windows[component] = _Window(self.thresholds)
        return component, window

    def _health_step(self, component: str, window: _Window, now: float) -> HealthChange | None:
        calls, errors = window.totals(now)
        rate = errors / calls if calls else 0.0
        new = self.thresholds.classify(rate, calls)
        if new is window.health:
            return None
        change = HealthChange(component, window.health, new, rate)
        window.health = new
        return change

    def record_success(self, component: str) -> None:
        """Count one successful call of ``component`` (for its error rate and health)."""
        now = self.clock()
        with self._lock:
            component, window = self._window(component)
            window.add(now, False)
            if window.health is Health.HEALTHY:  # a success cannot make it worse
                return
            change = self._health_step(component, window, now)
        if change is not None:
            self._notify(self._health_listeners, change)  # type: ignore[arg-type]

    def record_error(
        self,
        component: str,
        error: BaseException,
        *,
        model: str | None = None,
        propagated: bool = False,
    ) -> None:
        """Count one failed call of ``component`` with ``error``.

        Args:
            component: the run or component name.
            error: the exception.
            model: the model the call used, if any.
            propagated: whether the same exception was already recorded for a child run
                (it is still counted here, and also in the group's ``propagated``).
        """
        kind = self._classify(error).kind.value
        error_type = type(error).__name__
        sample = truncate(redact(str(error)), self._sample_chars)
        now = self.clock()
        new_group: ErrorGroup | None = None
        with self._lock:
            key: GroupKey = (component, error_type, model, kind)
            group = self._groups.get(key)
            if group is None and len(self._groups) >= self._max_groups - 1:
                key = (OTHER, OTHER, None, OTHER)
                group = self._groups.get(key)
            created = group is None
            if group is None:
                group = self._groups[key] = _Group(now, self._max_samples)
            group.count += 1
            group.propagated += propagated
            group.last = now
            if not group.samples or group.samples[-1] != sample:
                group.samples.append(sample)
            if created:
                new_group = self._freeze(key, group)
            component, window = self._window(component)
            window.add(now, True)
            change = self._health_step(component, window, now)
        if new_group is not None:
            self._notify(self._group_listeners, new_group)  # type: ignore[arg-type]
        if change is not None:
            self._notify(self._health_listeners, change)  # type: ignore[arg-type]

    # -- reading ------------------------------------------------------------------------
    @staticmethod
    def _freeze(key: GroupKey, group: _Group) -> ErrorGroup:
        component, error_type, model, kind = key
        return ErrorGroup(
            component=component,
            error_type=error_type,
            model=model,
            kind=kind,
            count=group.count,
            propagated=group.propagated,
            first_seen=group.first,
            last_seen=group.last,
            samples=tuple(group.samples),
        )

    def groups(self) -> list[ErrorGroup]:
        """Every error group, most frequent first."""
        with self._lock:
            frozen = [self._freeze(k, g) for k, g in self._groups.items()]
        return sorted(frozen, key=lambda g: (-g.count, g.component, g.error_type))

    @property
    def group_count(self) -> int:
        """How many groups are held (at most ``max_groups``)."""
        return len(self._groups)

    def error_rate(self, component: str) -> float:
        """``component``'s error rate over the sliding window (0.0 if no calls)."""
        now = self.clock()
        with self._lock:
            window = self._windows.get(component)
            if window is None:
                return 0.0
            calls, errors = window.totals(now)
        return errors / calls if calls else 0.0

    def health(self) -> dict[str, Health]:
        """Each component's health now (a read also notes changes, without notifying)."""
        now = self.clock()
        with self._lock:
            result: dict[str, Health] = {}
            for component, window in self._windows.items():
                calls, errors = window.totals(now)
                rate = errors / calls if calls else 0.0
                result[component] = self.thresholds.classify(rate, calls)
        return result

    def summary(self) -> str:
        """A readable summary: health per component, then the error groups."""
        health = self.health()
        by_state: dict[Health, list[str]] = {}
        for component, state in sorted(health.items()):
            by_state.setdefault(state, []).append(component)
        lines = [
            "health: "
            + (
                "; ".join(
                    f"{state.value}: {', '.join(names)}"
                    if state is not Health.HEALTHY
                    else f"{len(names)} healthy"
                    for state, names in sorted(by_state.items(), key=lambda kv: kv[0].value)
                )
                or "-"
            )
        ]
        groups = self.groups()
        if not groups:
            lines.append("no errors")
        for g in groups:
            model = f" model={g.model}" if g.model else ""
            origin = f" ({g.count - g.propagated} at origin)" if g.propagated else ""
            lines.append(f"{g.count:>5}x {g.component} {g.error_type} [{g.kind}]{model}{origin}")
            if g.samples:
                lines.append(f"       e.g. {g.samples[-1]}")
        return "\n".join(lines)

    def reset(self) -> None:
        """Forget every group and window (listeners stay subscribed)."""
        with self._lock:
            self._groups.clear()
            self._windows.clear()
