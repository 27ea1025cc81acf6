"""The circuit breaker's state machine: pure, lock-free, JSON-serialisable.

:class:`BreakerMachine` decides; it neither locks, sleeps, reads a clock nor calls
anything. A store (:mod:`oscar_langchain.breaker_store`) applies its methods
atomically (under a short lock in memory, or compare-and-set in Redis), and
:class:`~oscar_langchain.circuit_breaker.CircuitBreaker` turns its answers into
calls, rejections and events.

States: ``CLOSED`` (calls flow, outcomes are counted), ``OPEN`` (calls are rejected
until the open duration has passed), ``HALF_OPEN`` (up to ``half_open_max_calls``
probe calls are admitted; once all have reported, the breaker closes if their
failure and slow-call rates are under the thresholds and opens again otherwise),
``FORCED_OPEN`` (rejects until reset) and ``DISABLED`` (admits all, counts nothing).

Example:
    >>> m = BreakerMachine(BreakerConfig(window_size=4, minimum_calls=2, open_duration=10))
    >>> for _ in range(2):
    ...     permit = m.acquire(0.0)
    ...     _ = m.record(0.0, permit, failed=True, duration=0.1)
    >>> m.state, m.acquire(5.0).admitted, m.acquire(10.0).state
    (<CircuitState.OPEN: 'open'>, False, <CircuitState.HALF_OPEN: 'half_open'>)
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Literal

from oscar_langchain.breaker_window import CountWindow, TimeWindow, Window, WindowCounts
from oscar_langchain.errors import ConfigurationError

__all__ = [
    "Admission",
    "BreakerConfig",
    "BreakerMachine",
    "CircuitState",
    "Transition",
]


class CircuitState(str, enum.Enum):
    """States of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


@dataclass(frozen=True)
class BreakerConfig:
    """How a circuit breaker counts and when it trips.

    Attributes:
        window: ``"count"`` (the last ``window_size`` calls) or ``"time"`` (the calls of
            the last ``window_size`` seconds, in ``time_buckets`` buckets).
        window_size: calls (count window) or seconds (time window).
        time_buckets: buckets of a time window.
        minimum_calls: calls the window must hold before rates are judged.
        failure_rate_threshold: trip when failed/calls reaches this (0 < x <= 1).
        slow_call_rate_threshold: trip when slow/calls reaches this (0 < x <= 1).
        slow_call_duration: a call lasting at least this many seconds is slow
            (``None``: no call is slow).
        open_duration: seconds OPEN lasts before the first probe.
        open_duration_multiplier: each consecutive trip multiplies the open duration
            by this (1.0: constant), up to ``max_open_duration``.
        max_open_duration: cap of the growing open duration.
        half_open_max_calls: probe calls HALF_OPEN admits (cluster-wide with Redis).
        probe_timeout: seconds a probe permit lasts; a probe that has not reported by
            then (its process died, or it hangs) frees its slot for another probe, and
            its late outcome is dropped. ``None``: probes never expire.

    Example:
        >>> BreakerConfig(window="time", window_size=60).time_buckets
        10
        >>> BreakerConfig(failure_rate_threshold=2)
        Traceback (most recent call last):
        ...
        oscar_langchain.errors.ConfigurationError: failure_rate_threshold: must be in (0, 1], got 2
    """

    window: Literal["count", "time"] = "count"
    window_size: float = 100
    time_buckets: int = 10
    minimum_calls: int = 10
    failure_rate_threshold: float = 0.5
    slow_call_rate_threshold: float = 1.0
    slow_call_duration: float | None = None
    open_duration: float = 30.0
    open_duration_multiplier: float = 1.0
    max_open_duration: float = 600.0
    half_open_max_calls: int = 1
    probe_timeout: float | None = 120.0

    def __post_init__(self) -> None:
        if self.window not in ("count", "time"):
            raise ConfigurationError("window", f"must be 'count' or 'time', got {self.window!r}")
        if self.window_size <= 0 or (self.window == "count" and self.window_size % 1):
            raise ConfigurationError(
                "window_size", f"must be a positive count, got {self.window_size}"
            )
        for name in ("time_buckets", "minimum_calls", "half_open_max_calls"):
            if getattr(self, name) < 1:
                raise ConfigurationError(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("failure_rate_threshold", "slow_call_rate_threshold"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigurationError(name, f"must be in (0, 1], got {value}")
        if self.slow_call_duration is not None and self.slow_call_duration <= 0:
            raise ConfigurationError("slow_call_duration", "must be > 0 or None")
        if self.open_duration < 0:
            raise ConfigurationError("open_duration", f"must be >= 0, got {self.open_duration}")
        if self.open_duration_multiplier < 1:
            raise ConfigurationError("open_duration_multiplier", "must be >= 1")
        if self.max_open_duration < self.open_duration:
            raise ConfigurationError("max_open_duration", "must be >= open_duration")
        if self.probe_timeout is not None and self.probe_timeout <= 0:
            raise ConfigurationError("probe_timeout", "must be > 0 or None")

    def new_window(self) -> Window:
        """An empty window of the configured kind."""
        if self.window == "count":
            return CountWindow(int(self.window_size))
        return TimeWindow(float(self.window_size), self.time_buckets)

    def open_duration_after(self, trips: int) -> float:
        """How long OPEN lasts after the ``trips``-th consecutive trip (1-based)."""
        grown = self.open_duration * self.open_duration_multiplier ** max(0, trips - 1)
        return min(grown, self.max_open_duration)


@dataclass(frozen=True)
class Transition:
    """A change of state, with the time and the reason."""

    from_state: CircuitState
    to_state: CircuitState
    at: float
    reason: str


@dataclass(frozen=True)
class Admission:
    """The machine's answer to "may I call?"; a permit when ``admitted``."""

    admitted: bool
    state: CircuitState
    generation: int
    probe: bool = False
    retry_after: float | None = None
    transitions: tuple[Transition, ...] = ()
    lease: float | None = None
    """A probe's expiry time (``None``: not a probe, or probes never expire)."""


class BreakerMachine:
    """The breaker's state; every method is a pure state change (see the module doc)."""

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self.state = CircuitState.CLOSED
        self.window = config.new_window()
        self.open_until: float | None = None
        self.trips = 0
        self.generation = 0
        self.probes_admitted = 0
        self.probe_calls = self.probe_failures = self.probe_slow = 0
        self.probe_leases: list[float | None] = []
        """Expiry of each probe admitted and not reported yet."""
        self._free: Admission | None = None  # the admission of CLOSED/DISABLED, reused

    # -- decisions ---------------------------------------------------------------
    def acquire(self, now: float) -> Admission:
        """Admit a call or reject it (moving OPEN to HALF_OPEN when the time has come)."""
        state = self.state
        if state is CircuitState.CLOSED or state is CircuitState.DISABLED:
            free = self._free
            if free is None or free.generation != self.generation or free.state is not state:
                free = self._free = Admission(True, state, self.generation)
            return free
        moved: list[Transition] = []
        if state is CircuitState.OPEN and self.open_until is not None and now >= self.open_until:
            moved.append(self._move(CircuitState.HALF_OPEN, now, "open duration elapsed"))
            state = self.state
        if state is CircuitState.HALF_OPEN:
            self._expire_probes(now)
            if self.probes_admitted < self.config.half_open_max_calls:
                self.probes_admitted += 1
                timeout = self.config.probe_timeout
                lease = None if timeout is None else now + timeout
                self.probe_leases.append(lease)
                return Admission(
                    True, state, self.generation, probe=True, transitions=tuple(moved), lease=lease
                )
        return Admission(
            False,
            state,
            self.generation,
            retry_after=self.retry_after(now),
            transitions=tuple(moved),
        )

    def record(
        self, now: float, permit: Admission, *, failed: bool, duration: float
    ) -> list[Transition]:
        """Count the outcome of an admitted call; return the transitions it caused.

        Outcomes of calls admitted before the last transition (another generation)
        are dropped: they describe a state that no longer holds. So are those of
        probes whose lease expired (another probe took their place).
        """
        if permit.generation != self.generation or self.state is CircuitState.DISABLED:
            return []
        limit = self.config.slow_call_duration
        slow = limit is not None and duration >= limit
        if self.state is CircuitState.CLOSED:
            window = self.window
            window.record(now, failed=failed, slow=slow)
            calls, config = window.calls, self.config
            if calls >= config.minimum_calls and (
                window.failures / calls >= config.failure_rate_threshold
                or window.slow / calls >= config.slow_call_rate_threshold
            ):
                counts = WindowCounts(calls, window.failures, window.slow)
                return [self._trip(now, self._reason(counts))]
            return []
        if self.state is CircuitState.HALF_OPEN and permit.probe and self._take(permit.lease):
            self.probe_calls += 1
            self.probe_failures += int(failed)
            self.probe_slow += int(slow)
            if self.probe_calls < self.config.half_open_max_calls:
                return []
            probes = WindowCounts(self.probe_calls, self.probe_failures, self.probe_slow)
            if self._breached(probes, 1):
                return [self._trip(now, "probes " + self._reason(probes))]
            return [self._move(CircuitState.CLOSED, now, "probes succeeded")]
        return []

    def release(self, permit: Admission) -> None:
        """Give back a permit whose outcome does not count (bad request, cancelled)."""
        if (
            permit.probe
            and permit.generation == self.generation
            and self.state is CircuitState.HALF_OPEN
            and self._take(permit.lease)
        ):
            self.probes_admitted = max(0, self.probes_admitted - 1)

    def force(self, target: CircuitState, now: float, reason: str) -> list[Transition]:
        """Move to ``target`` by hand (force_open, disable, reset to CLOSED)."""
        if target is self.state and target is not CircuitState.CLOSED:
            return []
        if target is CircuitState.OPEN:
            return [self._trip(now, reason)]
        return [self._move(target, now, reason)]

    # -- reading -----------------------------------------------------------------
    def retry_after(self, now: float) -> float | None:
        """Seconds until the next probe may be admitted (``None`` when not timed).

        OPEN: until the open duration ends. HALF_OPEN with every probe slot taken:
        until the first probe lease expires (``None`` if probes never expire).
        """
        if self.state is CircuitState.OPEN and self.open_until is not None:
            return max(0.0, self.open_until - now)
        if (
            self.state is CircuitState.HALF_OPEN
            and self.probes_admitted >= self.config.half_open_max_calls
        ):
            leases = [lease for lease in self.probe_leases if lease is not None]
            return max(0.0, min(leases) - now) if leases else None
        return None

    def counts(self, now: float) -> WindowCounts:
        """Counts of the sliding window at ``now``."""
        return self.window.counts(now)

    # -- internals ---------------------------------------------------------------
    def _expire_probes(self, now: float) -> None:
        """Free the slots of probes whose lease ran out (their outcomes will be dropped)."""
        leases = self.probe_leases
        if leases and any(lease is not None and lease <= now for lease in leases):
            kept = [lease for lease in leases if lease is None or lease > now]
            self.probes_admitted = max(0, self.probes_admitted - (len(leases) - len(kept)))
            self.probe_leases = kept

    def _take(self, lease: float | None) -> bool:
        """Remove a reporting probe's lease; ``False`` if it expired and was reclaimed."""
        try:
            self.probe_leases.remove(lease)
        except ValueError:
            return False
        return True

    def _breached(self, counts: WindowCounts, minimum: int) -> bool:
        if counts.calls < minimum:
            return False
        return (
            counts.failure_rate >= self.config.failure_rate_threshold
            or counts.slow_call_rate >= self.config.slow_call_rate_threshold
        )

    def _reason(self, counts: WindowCounts) -> str:
        return (
            f"failure rate {counts.failure_rate:.2f}, slow-call rate "
            f"{counts.slow_call_rate:.2f} over {counts.calls} calls"
        )

    def _trip(self, now: float, reason: str) -> Transition:
        self.trips += 1
        transition = self._move(CircuitState.OPEN, now, reason)
        self.open_until = now + self.config.open_duration_after(self.trips)
        return transition

    def _move(self, target: CircuitState, now: float, reason: str) -> Transition:
        transition = Transition(self.state, target, now, reason)
        self.state = target
        self.generation += 1
        self.probes_admitted = self.probe_calls = self.probe_failures = self.probe_slow = 0
        self.probe_leases = []
        self.open_until = None
        if target in (CircuitState.CLOSED, CircuitState.DISABLED):
            self.window.reset()
        if target is CircuitState.CLOSED:
            self.trips = 0
        return transition

    # -- persistence -------------------------------------------------------------
    def to_json(self) -> str:
        """The state as JSON (the config is not stored: each process passes its own)."""
        data: dict[str, Any] = {
            "state": self.state.value,
            "open_until": self.open_until,
            "trips": self.trips,
            "generation": self.generation,
            "probes": [
                self.probes_admitted,
                self.probe_calls,
                self.probe_failures,
                self.probe_slow,
            ],
            "leases": self.probe_leases,
            "window": self.window.to_dict(),
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes, config: BreakerConfig) -> BreakerMachine:
        """Rebuild a machine from :meth:`to_json` output."""
        data = json.loads(raw)
        machine = cls(config)
        machine.state = CircuitState(data["state"])
        machine.open_until = data["open_until"]
        machine.trips = int(data["trips"])
        machine.generation = int(data["generation"])
        (
            machine.probes_admitted,
            machine.probe_calls,
            machine.probe_failures,
            machine.probe_slow,
        ) = (int(x) for x in data["probes"])
        leases = data.get("leases")
        if leases is None:  # written before probe leases: let outstanding probes expire now
            leases = [0.0] * max(0, machine.probes_admitted - machine.probe_calls)
        machine.probe_leases = [None if x is None else float(x) for x in leases]
        machine.window.load(data["window"])
        return machine
