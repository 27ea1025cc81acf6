"""LangChain handler feeding :class:`~oscar_langchain.callbacks.ErrorAggregator`.

Every run that ends counts as a call of its component (the run name); every run that
fails is recorded with its model (for model runs). When a parent run fails with the
very exception one of its child runs failed with, it is marked ``propagated``, so a
group tells errors at their origin from errors passing through.
"""

from __future__ import annotations

from typing import Any

from oscar_langchain.callbacks._base import RunKey, SafeHandler
from oscar_langchain.callbacks._runs import ModelRequest
from oscar_langchain.callbacks.error_aggregator import ErrorAggregator

__all__ = ["ErrorCallbackHandler"]

_NAME, _MODEL, _PARENT, _CHILD_ERROR = 0, 1, 2, 3


class ErrorCallbackHandler(SafeHandler):
    """Records every LangChain run's outcome into an :class:`ErrorAggregator`.

    Args:
        aggregator: where to record (default: a new one with default thresholds).
        max_open_runs: the most runs in flight tracked at once.

    Example:
        >>> from langchain_core.runnables import RunnableLambda
        >>> def boom(x):
        ...     raise ValueError("bad input")
        >>> handler = ErrorCallbackHandler(ErrorAggregator())
        >>> chain = RunnableLambda(boom)
        >>> try:
        ...     chain.invoke(1, {"callbacks": [handler]})
        ... except ValueError:
        ...     pass
        >>> [(g.component, g.error_type, g.count) for g in handler.aggregator.groups()]
        [('boom', 'ValueError', 1)]
    """

    def __init__(
        self, aggregator: ErrorAggregator | None = None, *, max_open_runs: int = 100_000
    ) -> None:
        super().__init__(max_open_runs=max_open_runs)
        self.aggregator = aggregator if aggregator is not None else ErrorAggregator()
        self._runs: dict[RunKey, list[Any]] = {}

    def _run_start(
        self, run_type: str, run_id: RunKey, parent_run_id: RunKey | None, name: str, inputs: Any
    ) -> None:
        runs = self._runs
        runs[run_id] = [name, None, parent_run_id, None]
        if len(runs) > self.max_open_runs:
            self._evict(runs)

    def _model_start(
        self, run_id: RunKey, parent_run_id: RunKey | None, name: str, request: ModelRequest
    ) -> None:
        runs = self._runs
        runs[run_id] = [name, request.model()[0], parent_run_id, None]
        if len(runs) > self.max_open_runs:
            self._evict(runs)

    def _run_end(self, run_id: RunKey, outputs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            self.aggregator.record_success(run[_NAME])

    def _model_end(self, run_id: RunKey, response: Any) -> None:
        self._run_end(run_id, response)

    def _run_error(self, run_id: RunKey, error: BaseException) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        parent = self._runs.get(run[_PARENT]) if run[_PARENT] is not None else None
        if parent is not None:
            parent[_CHILD_ERROR] = error
        self.aggregator.record_error(
            run[_NAME], error, model=run[_MODEL], propagated=run[_CHILD_ERROR] is error
        )
