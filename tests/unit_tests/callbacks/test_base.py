"""SafeHandler: every LangChain event reaches its hook; a failing hook is counted, not raised."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from langchain_core.documents import Document
from langchain_core.outputs import LLMResult

from oscar_langchain.callbacks import (
    ErrorCallbackHandler,
    PerformanceCallbackHandler,
    PerformanceStats,
)
from oscar_langchain.callbacks._base import SafeHandler


class Raising(SafeHandler):
    def _run_start(self, *args: Any) -> None:
        raise RuntimeError("start")

    def _model_start(self, *args: Any) -> None:
        raise RuntimeError("model start")

    def _run_end(self, *args: Any) -> None:
        raise RuntimeError("end")

    def _model_end(self, *args: Any) -> None:
        raise RuntimeError("model end")

    def _run_error(self, *args: Any) -> None:
        raise RuntimeError("error")

    def _token(self, *args: Any) -> None:
        raise RuntimeError("token")

    def _custom(self, *args: Any) -> None:
        raise RuntimeError("custom")


def fire_everything(handler: SafeHandler) -> None:
    rid = uuid4()
    error = ValueError("x")
    handler.on_chain_start(None, {}, run_id=rid)
    handler.on_tool_start({"name": "t"}, "in", run_id=rid)
    handler.on_retriever_start({"name": "r"}, "q", run_id=rid)
    handler.on_chat_model_start({"name": "m"}, [[]], run_id=rid)
    handler.on_llm_start({"name": "m"}, ["p"], run_id=rid)
    handler.on_llm_new_token("a", run_id=rid)
    handler.on_llm_end(LLMResult(generations=[]), run_id=rid)
    handler.on_chain_end({}, run_id=rid)
    handler.on_tool_end("out", run_id=rid)
    handler.on_retriever_end([Document(page_content="d")], run_id=rid)
    for method in (
        handler.on_chain_error,
        handler.on_llm_error,
        handler.on_tool_error,
        handler.on_retriever_error,
    ):
        method(error, run_id=rid)
    handler.on_custom_event("name", {}, run_id=rid)


def test_every_event_is_guarded(caplog: pytest.LogCaptureFixture) -> None:
    handler = Raising()
    fire_everything(handler)
    assert handler.internal_errors == 15
    assert "Raising.on_chain_start failed" in caplog.text


def test_handlers_accept_every_event() -> None:
    for handler in (PerformanceCallbackHandler(PerformanceStats()), ErrorCallbackHandler()):
        fire_everything(handler)
        assert handler.internal_errors == 0


def test_tool_and_retriever_runs_are_timed() -> None:
    stats = PerformanceStats()
    handler = PerformanceCallbackHandler(stats)
    for start, end in (
        (handler.on_tool_start, handler.on_tool_end),
        (handler.on_retriever_start, handler.on_retriever_end),
    ):
        rid = uuid4()
        start({"name": "x"}, "in", run_id=rid, name="component")
        end("out", run_id=rid)
    rid = uuid4()
    handler.on_tool_start({"name": "x"}, "in", run_id=rid, name="component")
    handler.on_tool_error(ValueError(), run_id=rid)
    series = stats.snapshot().components["component"]
    assert (series.count, series.errors) == (3, 1)


def test_internal_failures_are_logged_sparingly(caplog: pytest.LogCaptureFixture) -> None:
    handler = Raising()
    for _ in range(200):
        handler.on_chain_end({}, run_id=uuid4())
    assert handler.internal_errors == 200
    assert len([r for r in caplog.records if "internal errors so far" in r.getMessage()]) == 5
