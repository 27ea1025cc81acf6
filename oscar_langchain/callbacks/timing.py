"""Feed performance stats from plain Python code: a decorator and a context manager.

:func:`trace_performance` times every call of a function (sync or async);
:func:`trace_block` times a block (``with`` or ``async with``) and lets it note the
first streamed token, token counts and the model. Both record into the same
:class:`~oscar_langchain.callbacks.stats.PerformanceStats` the LangChain handler uses
(the process-wide :func:`default_stats` unless given one) and, when given an
:class:`~oscar_langchain.callbacks.error_aggregator.ErrorAggregator`, report failures
to it. Exceptions always propagate unchanged.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, cast

from oscar_langchain.callbacks._cost import run_cost
from oscar_langchain.callbacks.error_aggregator import ErrorAggregator
from oscar_langchain.callbacks.stats import PerformanceStats, default_stats

__all__ = ["TraceBlock", "trace_block", "trace_performance"]

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger(__name__)


class TraceBlock:
    """A timed block; use :func:`trace_block` to make one.

    Example:
        >>> stats = PerformanceStats()
        >>> @trace_performance("parse", stats=stats)
        ... def parse(text):
        ...     return text.split()
        >>> parse("a b")
        ['a', 'b']
        >>> with trace_block("llm", stats=stats, model="gpt-4o") as block:
        ...     block.first_token()
        ...     block.add_tokens(input_tokens=5, output_tokens=2)
        >>> snap = stats.snapshot()
        >>> snap.components["parse"].count, snap.models["gpt-4o"].output_tokens
        (1, 2)
    """

    def __init__(
        self,
        name: str,
        stats: PerformanceStats,
        model: str | None,
        errors: ErrorAggregator | None,
    ) -> None:
        self.name = name
        self.model = model
        self.stats = stats
        self.errors = errors
        self.input_tokens = 0
        self.output_tokens = 0
        self.ttft: float | None = None
        self._start = 0.0

    def first_token(self) -> None:
        """Note that the first token (or chunk) arrived now; later calls are ignored."""
        if self.ttft is None:
            self.ttft = self.stats.clock() - self._start

    def add_tokens(self, input_tokens: int = 0, output_tokens: int = 0) -> None:
        """Add token counts to the block's totals."""
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens

    def __enter__(self) -> TraceBlock:
        self._start = self.stats.clock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._record(self.stats.clock() - self._start, exc)
        except Exception:  # recording must never mask or replace the block's outcome
            logger.exception("trace_block %r could not record its run", self.name)

    def _record(self, duration: float, exc: BaseException | None) -> None:
        tokens = self.input_tokens or self.output_tokens
        self.stats.record(
            self.name,
            duration,
            model=self.model,
            error=exc is not None,
            ttft=self.ttft,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost=run_cost(self.model, self.input_tokens, self.output_tokens) if tokens else None,
        )
        if self.errors is not None:
            if exc is None:
                self.errors.record_success(self.name)
            else:
                self.errors.record_error(self.name, exc, model=self.model)

    async def __aenter__(self) -> TraceBlock:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def trace_block(
    name: str,
    *,
    stats: PerformanceStats | None = None,
    model: str | None = None,
    errors: ErrorAggregator | None = None,
) -> TraceBlock:
    """A context manager (``with`` and ``async with``) timing a block as a run of ``name``.

    Args:
        name: the component name the block is recorded under.
        stats: where to record (default: :func:`default_stats`).
        model: the model the block calls, if any (for per-model stats and cost).
        errors: an aggregator to report the block's success or failure to.
    """
    return TraceBlock(name, stats if stats is not None else default_stats(), model, errors)


def trace_performance(
    name: str | None = None,
    *,
    stats: PerformanceStats | None = None,
    model: str | None = None,
    errors: ErrorAggregator | None = None,
) -> Callable[[F], F]:
    """Decorate a function (sync or async) so each call is recorded as a run.

    Args:
        name: the component name (default: the function's qualified name).
        stats: where to record (default: :func:`default_stats`).
        model: the model the function calls, if any.
        errors: an aggregator to report each call's success or failure to.
    """

    def decorate(func: F) -> F:
        label = name or func.__qualname__
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with trace_block(label, stats=stats, model=model, errors=errors):
                    return await cast(Callable[..., Awaitable[Any]], func)(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with trace_block(label, stats=stats, model=model, errors=errors):
                return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
