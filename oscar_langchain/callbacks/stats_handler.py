"""LangChain handler feeding :class:`~oscar_langchain.callbacks.stats.PerformanceStats`.

Every run (chain, model, tool, retriever) is timed from its start event to its end or
error event; model runs also give their model, token usage, cost (from the model
registry) and, when streamed, the time to the first token.
"""

from __future__ import annotations

from typing import Any

from oscar_langchain.callbacks._base import RunKey, SafeHandler
from oscar_langchain.callbacks._cost import run_cost
from oscar_langchain.callbacks._runs import ModelRequest, llm_usage
from oscar_langchain.callbacks.stats import PerformanceStats, default_stats

__all__ = ["PerformanceCallbackHandler"]

_START, _NAME, _MODEL, _TTFT = 0, 1, 2, 3


class PerformanceCallbackHandler(SafeHandler):
    """Times every LangChain run into a :class:`PerformanceStats`.

    Args:
        stats: where to record (default: the process-wide :func:`default_stats`, which
            :func:`trace_performance` and :func:`trace_block` also feed).
        max_open_runs: the most runs in flight tracked at once.

    Example:
        >>> from langchain_core.runnables import RunnableLambda
        >>> stats = PerformanceStats()
        >>> handler = PerformanceCallbackHandler(stats)
        >>> chain = RunnableLambda(lambda x: x + 1).with_config(run_name="add_one")
        >>> chain.invoke(1, {"callbacks": [handler]})
        2
        >>> stats.snapshot().components["add_one"].count
        1
    """

    def __init__(
        self, stats: PerformanceStats | None = None, *, max_open_runs: int = 100_000
    ) -> None:
        super().__init__(max_open_runs=max_open_runs)
        self.stats = stats if stats is not None else default_stats()
        self._clock = self.stats.clock
        self._runs: dict[RunKey, list[Any]] = {}

    def _run_start(
        self, run_type: str, run_id: RunKey, parent_run_id: RunKey | None, name: str, inputs: Any
    ) -> None:
        runs = self._runs
        runs[run_id] = [self._clock(), name, None, None]
        if len(runs) > self.max_open_runs:
            self._evict(runs)

    def _model_start(
        self, run_id: RunKey, parent_run_id: RunKey | None, name: str, request: ModelRequest
    ) -> None:
        runs = self._runs
        runs[run_id] = [self._clock(), name, request.model()[0], None]
        if len(runs) > self.max_open_runs:
            self._evict(runs)

    def _token(self, run_id: RunKey) -> None:
        run = self._runs.get(run_id)
        if run is not None and run[_TTFT] is None:
            run[_TTFT] = self._clock() - run[_START]

    def _run_end(self, run_id: RunKey, outputs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            self.stats.record(run[_NAME], self._clock() - run[_START], model=run[_MODEL])

    def _run_error(self, run_id: RunKey, error: BaseException) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            self.stats.record(
                run[_NAME], self._clock() - run[_START], model=run[_MODEL], error=True
            )

    def _model_end(self, run_id: RunKey, response: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        usage = llm_usage(response)
        model = run[_MODEL] or usage.response_model
        self.stats.record(
            run[_NAME],
            self._clock() - run[_START],
            model=model,
            ttft=run[_TTFT],
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cost=run_cost(model, usage.input_tokens, usage.output_tokens),
        )
