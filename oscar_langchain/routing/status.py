"""Render ``RouterRunnable.status()`` rows as a readable fixed-width table.

Example:
    >>> print(format_status([{"route": "a", "breaker": "closed", "in_flight": 0,
    ...     "max_in_flight": None, "requests": 3, "rpm": 10, "tokens": 90, "tpm": None,
    ...     "spent": 0.5, "budget": 2.0, "budget_left": 1.5, "latency": 0.25,
    ...     "successes": 3, "failures": 0}]).splitlines()[2])
    a      closed   0/-        3/10  90/-  $0.5000/$2.0000  $1.5000  250.0ms      3/0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_status"]

_COLUMNS = (
    "route",
    "breaker",
    "in-flight",
    "rpm",
    "tpm",
    "spent/budget",
    "left",
    "latency",
    "ok/fail",
)


def _of(used: Any, limit: Any) -> str:
    return f"{used}/{'-' if limit is None else limit}"


def _money(value: Any) -> str:
    return "-" if value is None else f"${value:.4f}"


def format_status(rows: Sequence[Mapping[str, Any]]) -> str:
    """A table with one line per route (``-`` marks no limit / no data)."""
    lines = [
        (
            str(r["route"]),
            str(r["breaker"]),
            _of(r["in_flight"], r["max_in_flight"]),
            _of(r["requests"], r["rpm"]),
            _of(r["tokens"], r["tpm"]),
            f"{_money(r['spent'])}/{_money(r['budget'])}",
            _money(r["budget_left"]),
            "-" if r["latency"] is None else f"{1000 * r['latency']:.1f}ms",
            f"{r['successes']}/{r['failures']}",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(_COLUMNS)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 6 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*_COLUMNS), "  ".join("-" * w for w in widths)]
    out.extend(fmt.format(*line) for line in lines)
    return "\n".join(x.rstrip() for x in out)
