"""One LangChain handler that drives several of oscar's handlers.

LangChain's per-handler dispatch (the ``ignore_*`` checks, rebuilding the keyword
arguments, the error guard) is paid once instead of once per handler, and the run's
name and parent are resolved once. Each part keeps its own state and its own
``internal_errors``: a part that fails does not stop the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oscar_langchain.callbacks._base import RunKey, SafeHandler
from oscar_langchain.callbacks._runs import ModelRequest
from oscar_langchain.errors import ConfigurationError

__all__ = ["CombinedHandler"]


class CombinedHandler(SafeHandler):
    """Forwards every event to ``parts`` (oscar handlers), isolating their failures.

    Args:
        parts: the handlers to drive, in order.

    Example:
        >>> from langchain_core.runnables import RunnableLambda
        >>> from oscar_langchain.callbacks import (
        ...     ErrorCallbackHandler, PerformanceCallbackHandler, PerformanceStats,
        ... )
        >>> stats = PerformanceCallbackHandler(PerformanceStats())
        >>> handler = CombinedHandler([stats, ErrorCallbackHandler()])
        >>> RunnableLambda(lambda x: x + 1).invoke(1, {"callbacks": [handler]})
        2
        >>> stats.stats.snapshot().components["RunnableLambda"].count
        1
    """

    def __init__(self, parts: Sequence[SafeHandler]) -> None:
        super().__init__()
        if not parts:
            raise ConfigurationError("parts", "needs at least one handler")
        self.parts = tuple(parts)

    @property
    def open_runs(self) -> int:
        """The most runs any part holds open (the parts keep the runs, not this handler)."""
        return max(part.open_runs for part in self.parts)

    def _run_start(
        self, run_type: str, run_id: RunKey, parent_run_id: RunKey | None, name: str, inputs: Any
    ) -> None:
        for part in self.parts:
            try:
                part._run_start(run_type, run_id, parent_run_id, name, inputs)
            except Exception as exc:  # noqa: BLE001 - isolate the parts
                part._failed("on_run_start", exc)

    def _model_start(
        self, run_id: RunKey, parent_run_id: RunKey | None, name: str, request: ModelRequest
    ) -> None:
        for part in self.parts:
            try:
                part._model_start(run_id, parent_run_id, name, request)
            except Exception as exc:  # noqa: BLE001 - isolate the parts
                part._failed("on_model_start", exc)

    def _run_end(self, run_id: RunKey, outputs: Any) -> None:
        for part in self.parts:
            try:
                part._run_end(run_id, outputs)
            except Exception as exc:  # noqa: BLE001 - isolate the parts
                part._failed("on_run_end", exc)

    def _model_end(self, run_id: RunKey, response: Any) -> None:
        for part in self.parts:
            try:
                part._model_end(run_id, response)
            except Exception as exc:  # noqa: BLE001 - isolate the parts
                part._failed("on_llm_end", exc)

    def _run_error(self, run_id: RunKey, error: BaseException) -> None:
        for part in self.parts:
            try:
                part._run_error(run_id, error)
            except Exception as exc:  # noqa: BLE001 - isolate the parts
                part._failed("on_run_error", exc)

    def _token(self, run_id: RunKey) -> None:
        for part in self.parts:
            try:
                part._token(run_id)
            except Exception as exc:  # noqa: BLE001 - isolate the parts
                part._failed("on_llm_new_token", exc)

    def _custom(self, name: str, data: Any, run_id: RunKey) -> None:
        for part in self.parts:
            try:
                part._custom(name, data, run_id)
            except Exception as exc:  # noqa: BLE001 - isolate the parts
                part._failed("on_custom_event", exc)
