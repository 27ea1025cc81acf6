"""A bounded-memory quantile sketch (relative-error log buckets, after DDSketch).

Each value lands in bucket ``ceil(log(value) / log(gamma))``; a quantile is read back
within ``relative_accuracy`` of the true value. Memory is at most ``max_bins`` buckets
whatever the number of values: past the cap the two lowest buckets merge (the low
quantiles lose accuracy first, which latency percentiles do not read).
"""

from __future__ import annotations

import math

from oscar_langchain.errors import ConfigurationError

__all__ = ["QuantileSketch"]

_TINY = 1e-9  # values at or below this (seconds, tokens...) count as zero


class QuantileSketch:
    """Streaming quantiles in bounded memory; not thread-safe (callers hold a lock).

    Args:
        relative_accuracy: the relative error bound of a quantile, in ``(0, 1)``.
        max_bins: the most buckets kept (memory bound).

    Example:
        >>> sketch = QuantileSketch()
        >>> for ms in range(1, 101):
        ...     sketch.add(ms / 1000)
        >>> round(sketch.quantile(0.5), 3), round(sketch.quantile(0.99), 3)
        (0.05, 0.099)
    """

    __slots__ = ("_bins", "_gamma", "_log_gamma", "_max_bins", "_zero", "count", "total")

    def __init__(self, relative_accuracy: float = 0.01, max_bins: int = 2048) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ConfigurationError("relative_accuracy", "must be in (0, 1)")
        if max_bins < 2:
            raise ConfigurationError("max_bins", "must be at least 2")
        self._gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        self._max_bins = max_bins
        self._bins: dict[int, int] = {}
        self._zero = 0
        self.count = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        """Add one value (negative values count as zero)."""
        self.count += 1
        if value <= _TINY:
            self._zero += 1
            return
        self.total += value
        key = math.ceil(math.log(value) / self._log_gamma)
        bins = self._bins
        bins[key] = bins.get(key, 0) + 1
        if len(bins) > self._max_bins:
            low, second = sorted(bins)[:2]
            bins[second] += bins.pop(low)

    @property
    def bins(self) -> int:
        """How many buckets are held (at most ``max_bins``)."""
        return len(self._bins)

    @property
    def mean(self) -> float:
        """The exact mean of the values added (0.0 when empty)."""
        return self.total / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (``0 <= q <= 1``); 0.0 when empty."""
        if not 0.0 <= q <= 1.0:
            raise ConfigurationError("q", "must be in [0, 1]")
        if self.count == 0:
            return 0.0
        rank = q * (self.count - 1)
        seen = self._zero
        if rank < seen:
            return 0.0
        for key in sorted(self._bins):
            seen += self._bins[key]
            if rank < seen:
                return 2.0 * self._gamma**key / (self._gamma + 1.0)
        return 2.0 * self._gamma ** max(self._bins) / (self._gamma + 1.0)
