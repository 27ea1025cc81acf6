"""Cost of a model run from the model registry, or ``None`` when it cannot be known.

``oscar_langchain.models`` is imported lazily; an unknown model (or a registry that is
not there) gives ``None`` rather than an error, and unknown names are remembered so a
miss costs one exception per model, not per run.

Example:
    >>> run_cost(None, 10, 10) is None
    True
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["run_cost"]

logger = logging.getLogger(__name__)

_unknown: set[str] = set()
_MAX_UNKNOWN = 1024
_estimate: Callable[..., float] | None = None
_loaded = False


def _estimator() -> Callable[..., float] | None:
    global _estimate, _loaded  # noqa: PLW0603 - one lazy import for the process
    if not _loaded:
        _loaded = True
        try:
            from oscar_langchain.models import (  # type: ignore[import-not-found,unused-ignore]
                estimate_cost,
            )
        except ImportError:  # the registry is not in this build
            logger.debug("oscar_langchain.models not available; costs are recorded as None")
        else:
            _estimate = estimate_cost
    return _estimate


def run_cost(
    model: str | None, input_tokens: int | None, output_tokens: int | None
) -> float | None:
    """USD cost of a run of ``model``; ``None`` if the model or the token counts are unknown."""
    if model is None or (input_tokens is None and output_tokens is None) or model in _unknown:
        return None
    estimate = _estimator()
    if estimate is None:
        return None
    try:
        return float(estimate(model, input_tokens or 0, output_tokens or 0))
    except (LookupError, ValueError):  # UnknownModelError is a LookupError
        if len(_unknown) < _MAX_UNKNOWN:
            _unknown.add(model)
        return None
