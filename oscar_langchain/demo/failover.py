"""Demo section: failover between two local model servers while one is killed.

The primary server answers a few questions, then it is killed; the next request fails
over to the second server, the primary's breaker opens (printed as it happens) and
later requests skip the dead server without calling it. Without local servers
(``ctx.chat_model is None``) two fake servers stand in, and "killing" one makes it
refuse connections.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import cycle, islice
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from oscar_langchain.circuit_breaker import BreakerConfig, BreakerEvent
from oscar_langchain.demo.context import DemoContext
from oscar_langchain.failover import FailoverRunnable, RetryPolicy

__all__ = ["run"]

QUESTIONS_BEFORE_KILL = 2
QUESTIONS_AFTER_KILL = 4


def _fake_servers() -> tuple[list[Runnable[Any, Any]], Callable[[int], None]]:
    """Two fake 'servers'; ``kill(i)`` makes server ``i`` refuse connections."""
    alive = [True, True]

    def server(i: int) -> Runnable[Any, Any]:
        def answer(prompt: Any) -> AIMessage:
            if not alive[i]:
                raise ConnectionRefusedError(f"server {i}: connection refused")
            text = prompt if isinstance(prompt, str) else str(prompt)
            return AIMessage(f"(server {i}) an answer to: {text[:40]}")

        return RunnableLambda(answer, name=f"server-{i}")

    def kill(i: int) -> None:
        alive[i] = False

    return [server(0), server(1)], kill


def _print_event(out: Callable[[str], None]) -> Callable[[BreakerEvent], None]:
    def listener(event: BreakerEvent) -> None:
        if event.kind == "transition" and event.from_state is not None:
            out(
                f"   [breaker {event.breaker}] {event.from_state.value} -> "
                f"{event.state.value} ({event.reason})"
            )

    return listener


def run(ctx: DemoContext) -> None:
    """Ask questions through FailoverRunnable([server 0, server 1]); kill server 0 mid-run."""
    out = ctx.out
    out("== Failover: two model servers, one killed mid-run ==")
    if ctx.chat_model is None or ctx.kill_server is None:
        candidates, kill = _fake_servers()
        out("(no local model servers: two fake servers stand in)")
    else:
        make = ctx.chat_model
        candidates = [make(i, max_tokens=48, max_retries=0, timeout=30) for i in (0, 1)]
        kill = ctx.kill_server
    chain = FailoverRunnable(
        candidates=candidates,
        names=["server-0", "server-1"],
        breaker_config=BreakerConfig(window_size=5, minimum_calls=2, open_duration=60),
        breaker_listeners=[_print_event(out)],
        retry=RetryPolicy(max_attempts=1),
    )
    config = RunnableConfig(callbacks=ctx.callbacks) if ctx.callbacks else None
    questions = list(
        islice(
            cycle(ctx.questions or ["What is a circuit breaker?"]),
            QUESTIONS_BEFORE_KILL + QUESTIONS_AFTER_KILL,
        )
    )
    for n, question in enumerate(questions):
        if n == QUESTIONS_BEFORE_KILL:
            out(" * killing server-0")
            kill(0)
        answer = chain.invoke(question, config)
        route = " > ".join(answer.response_metadata["oscar.route"])
        text = " ".join(str(answer.content).split())[:70]
        out(f" {n + 1}. route {route:<22} {text}")
    out(" health:")
    for name, snap in chain.health().items():
        probe = snap["time_to_next_probe"]
        wait = f", next probe in {probe:.0f}s" if probe is not None else ""
        out(f"   {name}: {snap['state']}, {snap['calls']} calls, {snap['failures']} failures{wait}")
