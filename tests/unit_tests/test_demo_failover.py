"""The failover demo section runs on fakes, with and without a chat-model factory."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import DeterministicFakeEmbedding

from oscar_langchain.demo import failover as demo
from oscar_langchain.demo.context import DemoContext
from tests.unit_tests.failover_fakes import FlakyChat


def _ctx(lines: list[str], **kw: Any) -> DemoContext:
    return DemoContext(
        corpus=[],
        questions=["What is a circuit breaker?", "Why fail over?"],
        embeddings=DeterministicFakeEmbedding(size=8),
        out=lines.append,
        **kw,
    )


def test_demo_runs_on_fake_servers_without_a_chat_model() -> None:
    lines: list[str] = []
    demo.run(_ctx(lines))
    text = "\n".join(lines)
    assert "killing server-0" in text
    assert "[breaker server-0] closed -> open" in text
    assert "route server-0 > server-1" in text
    assert lines[-2].startswith("   server-0: open")


def test_demo_with_a_chat_model_factory_and_kill_server() -> None:
    models = [FlakyChat(model_name="s0", reply="zero"), FlakyChat(model_name="s1", reply="one")]

    def kill(i: int) -> None:
        models[i].errors = [ConnectionRefusedError("refused")] * 10

    lines: list[str] = []
    demo.run(_ctx(lines, chat_model=lambda i, **kw: models[i], kill_server=kill))
    assert models[1].calls >= 4
    assert any("closed -> open" in line for line in lines)
