from __future__ import annotations

import pytest

from oscar_langchain.demo.__main__ import load_context, main


def test_demo_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-local"]) == 0
    out = capsys.readouterr().out
    assert "o200k_base" in out and "rate_limit" in out and "demo finished" in out
    assert "no local model in this run" in out


def test_demo_context() -> None:
    ctx = load_context()
    assert len(ctx.corpus) == 6 and ctx.corpus[0].id == "breakers"
    assert len(ctx.questions) == 4
