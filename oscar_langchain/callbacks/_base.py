"""Callback bookkeeping written once: every LangChain event routed to a few hooks.

:class:`SafeHandler` implements LangChain's ``on_*`` methods once, from a table of
events: each runs its hook under ``try`` so an internal failure is logged and counted
in ``internal_errors`` and the user's chain carries on. Subclasses implement only the
hooks they need (``_run_start``, ``_model_start``, ``_run_end``, ``_model_end``,
``_run_error``, ``_token``, ``_custom``). Hooks get runs by key, the run id's 128-bit
integer (``UUID.__hash__`` is Python code; an ``int`` key hashes in C).
``run_inline = True`` makes LangChain's async callback manager call these cheap,
non-blocking methods directly instead of via a thread pool, and the ``ignore_*``
flags are plain class attributes (LangChain reads one per event; the base class
makes each a property call).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.callbacks.base import BaseCallbackManager
from langchain_core.runnables.config import var_child_runnable_config

from oscar_langchain.callbacks._runs import ModelRequest, run_name
from oscar_langchain.errors import ConfigurationError

__all__ = ["RunKey", "SafeHandler", "ambient_parent"]

logger = logging.getLogger("oscar_langchain.callbacks")
_LOG_FIRST = 5


RunKey = int
"""A run's key in the handlers' tables: ``run_id.int``."""


_active_config = var_child_runnable_config.get


def ambient_parent() -> UUID | None:
    """The run whose child config is active in this context, if any.

    LangChain reports some runs under the wrong parent: ``RunnableWithFallbacks.invoke``
    (langchain-core 1.x) activates its child config but hands the fallbacks the config
    it was called with, so they start as its siblings (or as roots). The active child
    config still names the run they belong to.
    """
    config = _active_config()
    if config is None:
        return None
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        return callbacks.parent_run_id
    return None


def _start_event(run_type: str) -> Callable[..., None]:
    """``on_{run_type}_start``: resolve the name and parent, then ``_run_start``.

    The payload is positional-only: LangChain also passes ``inputs=`` to tool starts.
    """
    where = f"on_{run_type}_start"

    def on_start(
        self: SafeHandler,
        serialized: dict[str, Any] | None,
        inputs: Any,
        /,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            key = run_id.int
            parent = parent_run_id.int if parent_run_id is not None else None
            if self.repair_parents:
                parent = self._resolve_parent(key, parent)
            self._run_start(run_type, key, parent, name or run_name(serialized, kwargs), inputs)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed(where, exc)

    on_start.__name__ = on_start.__qualname__ = where
    on_start.__doc__ = f"Route a {run_type} start."
    return on_start


def _model_start_event(chat: bool) -> Callable[..., None]:
    """``on_chat_model_start`` / ``on_llm_start``: then ``_model_start``."""
    where = "on_chat_model_start" if chat else "on_llm_start"

    def on_start(
        self: SafeHandler,
        serialized: dict[str, Any],
        prompts: list[Any],
        /,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            request = ModelRequest(chat, prompts, kwargs)
            parent = parent_run_id.int if parent_run_id is not None else None
            if self.repair_parents:
                parent = self._resolve_parent(run_id.int, parent)
            self._model_start(run_id.int, parent, run_name(serialized, kwargs), request)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed(where, exc)

    on_start.__name__ = on_start.__qualname__ = where
    on_start.__doc__ = "Route a chat model start." if chat else "Route an LLM start."
    return on_start


def _end_event(where: str, hook: str) -> Callable[..., None]:
    """An end or error event ``where``: call the hook named ``hook``, forget the parent."""

    def on_end(self: SafeHandler, result: Any, /, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            key = run_id.int
            getattr(self, hook)(key, result)
            if self._parents:
                self._parents.pop(key, None)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed(where, exc)

    on_end.__name__ = on_end.__qualname__ = where
    on_end.__doc__ = f"Route ``{where}`` to ``{hook}``."
    return on_end


class SafeHandler(BaseCallbackHandler):
    """Base of oscar's handlers: internal failures are logged and counted, never raised.

    Args:
        max_open_runs: the most runs tracked at once; past it the oldest open run is
            forgotten (a run whose end never came must not leak memory).
    """

    raise_error: bool = False
    run_inline: bool = True
    ignore_llm: bool = False
    ignore_retry: bool = False
    ignore_chain: bool = False
    ignore_agent: bool = False
    ignore_retriever: bool = False
    ignore_chat_model: bool = False
    ignore_custom_event: bool = False
    repair_parents: bool = True
    """Nest runs LangChain reports under their grandparent (or no parent) under the
    active run instead (see :func:`ambient_parent`)."""

    def __init__(self, *, max_open_runs: int = 100_000) -> None:
        if max_open_runs < 1:
            raise ConfigurationError("max_open_runs", "must be at least 1")
        self.max_open_runs = max_open_runs
        self._runs: dict[RunKey, Any] = {}
        """The handler's own record of each open run (what it is, a subclass decides)."""
        self.internal_errors = 0
        self._errors_lock = threading.Lock()
        self._parents: dict[RunKey, RunKey | None] = {}

    @property
    def open_runs(self) -> int:
        """Runs started and not yet ended (bounded by ``max_open_runs``)."""
        return len(self._runs)

    # -- hooks for subclasses ---------------------------------------------------------
    def _run_start(
        self, run_type: str, run: RunKey, parent: RunKey | None, name: str, inputs: Any
    ) -> None:
        """A chain, tool or retriever run named ``name`` started (``run_type`` says which)."""

    def _model_start(
        self, run: RunKey, parent: RunKey | None, name: str, request: ModelRequest
    ) -> None:
        """A chat model or LLM run started."""

    def _run_end(self, run: RunKey, outputs: Any) -> None:
        """A chain, tool or retriever run ended."""

    def _model_end(self, run: RunKey, response: Any) -> None:
        """A model run ended with ``response`` (an ``LLMResult``)."""

    def _run_error(self, run: RunKey, error: BaseException) -> None:
        """Any run failed."""

    def _token(self, run: RunKey) -> None:
        """A model run streamed a token."""

    def _custom(self, name: str, data: Any, run: RunKey) -> None:
        """A custom event was dispatched from inside run ``run``."""

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

    def _resolve_parent(self, run: RunKey, parent: RunKey | None) -> RunKey | None:
        """The run's real parent: LangChain's, unless the active run is a child of it."""
        parents = self._parents
        active = ambient_parent()
        if active is not None:
            ambient = active.int
            if ambient != parent and (parent is None or parents.get(ambient, ambient) == parent):
                parent = ambient
        parents[run] = parent
        if len(parents) > self.max_open_runs:
            self._evict(parents)
        return parent

    def _evict(self, runs: dict[RunKey, Any]) -> None:
        """Forget the oldest open runs until ``runs`` is within ``max_open_runs``."""
        while len(runs) > self.max_open_runs:
            try:
                runs.pop(next(iter(runs)))
            except (StopIteration, KeyError, RuntimeError):  # raced with another thread
                return

    # -- LangChain's interface: one guarded router per event ----------------------------
    on_chain_start = _start_event("chain")
    on_tool_start = _start_event("tool")
    on_retriever_start = _start_event("retriever")
    on_chat_model_start = _model_start_event(chat=True)
    on_llm_start = _model_start_event(chat=False)
    on_chain_end = _end_event("on_chain_end", "_run_end")
    on_tool_end = _end_event("on_tool_end", "_run_end")
    on_retriever_end = _end_event("on_retriever_end", "_run_end")
    on_llm_end = _end_event("on_llm_end", "_model_end")
    on_chain_error = _end_event("on_chain_error", "_run_error")
    on_tool_error = _end_event("on_tool_error", "_run_error")
    on_retriever_error = _end_event("on_retriever_error", "_run_error")
    on_llm_error = _end_event("on_llm_error", "_run_error")

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
            self._token(run_id.int)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_llm_new_token", exc)

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Route a custom event (oscar's run annotations among them)."""
        try:
            self._custom(name, data, run_id.int)
        except Exception as exc:  # noqa: BLE001 - never break the user's chain
            self._failed("on_custom_event", exc)
