"""Callback bookkeeping written once: every LangChain event routed to a few hooks.

:class:`SafeHandler` implements LangChain's ``on_*`` methods once: each runs its hook
under ``try`` so an internal failure is logged and counted in ``internal_errors`` and
the user's chain carries on. Subclasses implement only the hooks they need
(``_run_start``, ``_model_start``, ``_run_end``, ``_model_end``, ``_run_error``,
``_token``, ``_custom``). ``run_inline = True`` makes LangChain's async callback
manager call these cheap, non-blocking methods directly instead of via a thread pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.callbacks.base import BaseCallbackManager
from langchain_core.runnables.config import var_child_runnable_config

from oscar_langchain.callbacks._runs import ModelRequest, run_name
from oscar_langchain.errors import ConfigurationError

__all__ = ["SafeHandler", "ambient_parent"]

logger = logging.getLogger("oscar_langchain.callbacks")
_LOG_FIRST = 5


def ambient_parent() -> UUID | None:
    """The run whose child config is active in this context, if any.

    LangChain reports some runs under the wrong parent: ``RunnableWithFallbacks.invoke``
    (langchain-core 1.x) activates its child config but hands the fallbacks the config
    it was called with, so they start as its siblings (or as roots). The active child
    config still names the run they belong to.
    """
    config = var_child_runnable_config.get()
    if config is None:
        return None
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        return callbacks.parent_run_id
    return None


class SafeHandler(BaseCallbackHandler):
    """Base of oscar's handlers: internal failures are logged and counted, never raised.

    Args:
        max_open_runs: the most runs tracked at once; past it the oldest open run is
            forgotten (a run whose end never came must not leak memory).
    """

    raise_error: bool = False
    run_inline: bool = True
    repair_parents: bool = True
    """Nest runs LangChain reports under their grandparent (or no parent) under the
    active run instead (see :func:`ambient_parent`)."""

    def __init__(self, *, max_open_runs: int = 100_000) -> None:
        if max_open_runs < 1:
            raise ConfigurationError("max_open_runs", "must be at least 1")
        self.max_open_runs = max_open_runs
        self.internal_errors = 0
        self._errors_lock = threading.Lock()
        self._parents: dict[UUID, UUID | None] = {}

    # -- hooks for subclasses ---------------------------------------------------------
    def _run_start(
        self, run_type: str, run_id: UUID, parent_run_id: UUID | None, name: str, inputs: Any
    ) -> None:
        """A chain, tool or retriever run named ``name`` started (``run_type`` says which)."""

    def _model_start(
        self, run_id: UUID, parent_run_id: UUID | None, name: str, request: ModelRequest
    ) -> None:
        """A chat model or LLM run started."""

    def _run_end(self, run_id: UUID, outputs: Any) -> None:
        """A chain, tool or retriever run ended."""

    def _model_end(self, run_id: UUID, response: Any) -> None:
        """A model run ended with ``response`` (an ``LLMResult``)."""

    def _run_error(self, run_id: UUID, error: BaseException) -> None:
        """Any run failed."""

    def _token(self, run_id: UUID) -> None:
        """A model run streamed a token."""

    def _custom(self, name: str, data: Any, run_id: UUID) -> None:
        """A custom event was dispatched from inside run ``run_id``."""

    # -- plumbing ---------------------------------------------------------------------
    def _failed(self, where: str, exc: Exception) -> None:
        with self._errors_lock:
            self.internal_errors += 1
            count = self.internal_errors
        # The first few failures are logged in full; then one line per thousand, so a
        # broken exporter cannot flood the logs at thousands of runs per second.
        if count <= _LOG_FIRST or count % 1000 == 0:
            logger.warning(
                "%s.%s failed (%d internal errors so far): %r",
                type(self).__name__,
                where,
                count,
                exc,
                exc_info=exc if count <= _LOG_FIRST else None,
            )

    def _resolve_parent(self, run_id: UUID, parent_run_id: UUID | None) -> UUID | None:
        """The run's real parent: LangChain's, unless the active run is a child of it."""
        parents = self._parents
        ambient = ambient_parent()
        if (
            ambient is not None
            and ambient != parent_run_id
            and (parent_run_id is None or parents.get(ambient, ambient) == parent_run_id)
        ):
            parent_run_id = ambient
        parents[run_id] = parent_run_id
        if len(parents) > self.max_open_runs:
            self._evict(parents)
        return parent_run_id

    def _evict(self, runs: dict[UUID, Any]) -> None:
        """Forget the oldest open runs until ``runs`` is within ``max_open_runs``."""
        while len(runs) > self.max_open_runs:
            try:
                runs.pop(next(iter(runs)))
            except (StopIteration, KeyError, RuntimeError):  # raced with another thread
                return

    # -- LangChain's interface ------------------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Route a chain start."""
        try:
            name = kwargs.get("name") or run_name(serialized, kwargs)
            if self.repair_parents:
                parent_run_id = self._resolve_parent(run_id, parent_run_id)
            self._run_start("chain", run_id, parent_run_id, name, inputs)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_chain_start", exc)

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Route a tool start."""
        try:
            name = kwargs.get("name") or run_name(serialized, kwargs)
            if self.repair_parents:
                parent_run_id = self._resolve_parent(run_id, parent_run_id)
            self._run_start("tool", run_id, parent_run_id, name, input_str)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_tool_start", exc)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Route a retriever start."""
        try:
            name = kwargs.get("name") or run_name(serialized, kwargs)
            if self.repair_parents:
                parent_run_id = self._resolve_parent(run_id, parent_run_id)
            self._run_start("retriever", run_id, parent_run_id, name, query)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_retriever_start", exc)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Route a chat model start."""
        try:
            request = ModelRequest(True, messages, kwargs)
            if self.repair_parents:
                parent_run_id = self._resolve_parent(run_id, parent_run_id)
            self._model_start(run_id, parent_run_id, run_name(serialized, kwargs), request)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_chat_model_start", exc)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Route an LLM start."""
        try:
            request = ModelRequest(False, prompts, kwargs)
            if self.repair_parents:
                parent_run_id = self._resolve_parent(run_id, parent_run_id)
            self._model_start(run_id, parent_run_id, run_name(serialized, kwargs), request)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_llm_start", exc)

    def on_llm_new_token(
        self,
        token: Any,
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Route a streamed token."""
        try:
            self._token(run_id)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_llm_new_token", exc)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Route a model end."""
        try:
            self._model_end(run_id, response)
            if self._parents:
                self._parents.pop(run_id, None)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_llm_end", exc)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Route a chain end."""
        try:
            self._run_end(run_id, outputs)
            if self._parents:
                self._parents.pop(run_id, None)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_chain_end", exc)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Route a tool end."""
        try:
            self._run_end(run_id, output)
            if self._parents:
                self._parents.pop(run_id, None)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_tool_end", exc)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        """Route a retriever end."""
        try:
            self._run_end(run_id, documents)
            if self._parents:
                self._parents.pop(run_id, None)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_retriever_end", exc)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Route a chain error."""
        try:
            self._run_error(run_id, error)
            if self._parents:
                self._parents.pop(run_id, None)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_chain_error", exc)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Route a model error."""
        try:
            self._run_error(run_id, error)
            if self._parents:
                self._parents.pop(run_id, None)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_llm_error", exc)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Route a tool error."""
        try:
            self._run_error(run_id, error)
            if self._parents:
                self._parents.pop(run_id, None)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_tool_error", exc)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Route a retriever error."""
        try:
            self._run_error(run_id, error)
            if self._parents:
                self._parents.pop(run_id, None)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_retriever_error", exc)

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Route a custom event (oscar's run annotations among them)."""
        try:
            self._custom(name, data, run_id)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_custom_event", exc)
