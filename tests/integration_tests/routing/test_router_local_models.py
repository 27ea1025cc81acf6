"""Routing across three real llama-servers (Gemma 3 270M) with different windows and prices.

Each server really has the context size its registry entry states (512, 1024 and 2048
tokens), so a long prompt really overflows the small ones. The model ids are registered
in a model registry at run time; the router reads windows and prices from it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from oscar_langchain._net import wait_until
from oscar_langchain.circuit_breaker import BreakerConfig
from oscar_langchain.errors import ErrorKind, classify_error
from oscar_langchain.failover_policy import RetryPolicy
from oscar_langchain.local import LocalModelServer, LocalServerSettings
from oscar_langchain.models import ModelInfo, ModelRegistry
from oscar_langchain.routing import Cheapest, Route
from oscar_langchain.routing.router import RouterRunnable
from tests._support.backends import require_local_extra

pytestmark = pytest.mark.local_model

# route name -> (server context size = stated window, input price, output price per 1M)
SERVERS = {
    "cheap": (512, 0.1, 0.4),
    "mid": (1024, 1.0, 2.0),
    "large": (2048, 5.0, 15.0),
}
# ~700 tokens in both Gemma's and o200k's tokenizers: over 512, well under 1024
LONG_PROMPT = "Summarise this log in one word. " + "error " * 680
SHORT_OUTPUT = 4
RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.05, jitter=0.0)  # one quick retry


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, LocalModelServer]]:
    """Three running servers, one per route; each one's ``--ctx-size`` is its window."""
    require_local_extra()
    started: dict[str, LocalModelServer] = {}
    try:
        for name, (ctx, _, _) in SERVERS.items():
            # one slot, so the whole --ctx-size is one request's window
            settings = LocalServerSettings(
                ctx_size=ctx, model_name=f"gemma-{name}", extra_args=("--parallel", "1")
            )
            started[name] = LocalModelServer(settings=settings).start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def _registry(windows: dict[str, int] | None = None) -> ModelRegistry:
    """The bundled registry plus the three local model ids, registered at run time."""
    registry = ModelRegistry.default()
    for name, (ctx, price_in, price_out) in SERVERS.items():
        registry.register(
            ModelInfo(
                name=f"gemma-{name}",
                provider="local",
                context_window=(windows or {}).get(name, ctx),
                input_price=price_in,
                output_price=price_out,
            )
        )
    return registry


def _router(
    servers: dict[str, LocalModelServer],
    registry: ModelRegistry,
    max_tokens: dict[str, int] | None = None,
    **kw: Any,
) -> RouterRunnable:
    routes = [
        Route(
            name=name,
            runnable=server.chat_model(
                max_tokens=(max_tokens or {}).get(name, SHORT_OUTPUT), max_retries=0, timeout=60
            ),
            model=server.settings.model_name,
        )
        for name, server in servers.items()
    ]
    return RouterRunnable(
        routes=routes,
        selector=Cheapest(),
        registry=registry,
        default_output_tokens=SHORT_OUTPUT,
        complexity=None,
        retry=RETRY,
        **kw,
    )


def _route(message: Any) -> dict[str, Any]:
    meta: dict[str, Any] = message.response_metadata["oscar_route"]
    return meta


def test_long_prompt_overflows_the_small_server_for_real(servers):
    with pytest.raises(Exception) as info:
        servers["cheap"].chat_model(max_tokens=SHORT_OUTPUT, max_retries=0).invoke(LONG_PROMPT)
    assert classify_error(info.value).kind is ErrorKind.CONTEXT_LENGTH
    reply = servers["mid"].chat_model(max_tokens=SHORT_OUTPUT).invoke(LONG_PROMPT)
    assert 512 < reply.usage_metadata["input_tokens"] < 1024


def test_prices_and_windows_from_the_registry_route_each_prompt(servers):
    router = _router(servers, _registry())
    short = router.invoke("Name a colour.")
    assert _route(short)["chosen"] == "cheap"
    assert [name for name, _ in _route(short)["ranking"]] == ["cheap", "mid", "large"]
    long = router.invoke(LONG_PROMPT)
    meta = _route(long)
    assert meta["chosen"] == "mid"  # the cheapest route whose window fits
    assert meta["rejected"]["cheap"].startswith("context window: ")
    assert meta["attempts"] == [["mid", "ok"]]
    assert long.usage_metadata["input_tokens"] > 512  # the real server saw the long prompt
    spent = {row["route"]: row["spent"] for row in router.status()}
    assert spent["mid"] > spent["cheap"] > 0.0  # real usage at each route's price


async def test_understated_window_overflows_for_real_and_moves_on(servers):
    # the registry wrongly says "cheap" takes 1000 tokens: the real server refuses the
    # prompt, the failover core classifies the 400 as a context overflow and moves on
    # at once (no retry) to a route whose stated window is larger than 1000
    router = _router(servers, _registry({"cheap": 1000}))
    reply = await router.ainvoke(LONG_PROMPT)
    assert _route(reply)["chosen"] == "mid"
    assert _route(reply)["attempts"] == [["cheap", "context_length"], ["mid", "ok"]]
    chunks = [c async for c in router.astream(LONG_PROMPT)]
    assert "".join(str(c.content) for c in chunks)
    assert _route(chunks[0])["attempts"] == [["cheap", "context_length"], ["mid", "ok"]]


def _kill(server: LocalModelServer) -> None:
    """SIGKILL the server process (no clean shutdown), then reap it."""
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(timeout=20)
    server.stop()


def _busy(server: LocalModelServer) -> bool:
    """Whether the server is generating an answer now (llama-server's ``/slots``)."""
    with urllib.request.urlopen(server.url + "/slots", timeout=5) as response:
        return any(slot.get("is_processing") for slot in json.loads(response.read()))


def test_killing_the_chosen_server_moves_traffic_with_no_request_lost(servers):
    router = _router(
        servers,
        _registry(),
        # "cheap" answers at length, so a request is surely in flight when it is killed
        max_tokens={"cheap": 48},
        breaker_config=BreakerConfig(window_size=4, minimum_calls=2, open_duration=600),
    )
    before = [router.invoke(f"Say hi {i}.") for i in range(2)]
    assert [_route(m)["chosen"] for m in before] == ["cheap"] * 2

    in_flight: list[Any] = []
    asker = threading.Thread(target=lambda: in_flight.append(router.invoke("Tell a story.")))
    asker.start()
    assert wait_until(lambda: _busy(servers["cheap"]), timeout=30, interval=0.02)
    _kill(servers["cheap"])  # mid-answer
    asker.join(timeout=60)
    # the in-flight call broke, its retry found the port closed, then "mid" answered
    assert _route(in_flight[0])["attempts"] == [
        ["cheap", "connection"],
        ["cheap", "connection"],
        ["mid", "ok"],
    ]

    # two failures in a window of four opened the breaker: "cheap" is skipped, uncalled
    batch = router.batch([f"Count to {i}." for i in range(4)], {"max_concurrency": 2})
    last = router.invoke("Say bye.")
    for answer in (*batch, last):
        assert _route(answer)["chosen"] == "mid"
        assert _route(answer)["rejected"] == {"cheap": "circuit open"}
        assert _route(answer)["attempts"] == [["mid", "ok"]]

    answers = [*before, *in_flight, *batch, last]
    assert len(answers) == 8 and all(isinstance(a.content, str) for a in answers)
    status = {row["route"]: row for row in router.status()}
    assert status["cheap"]["breaker"] == "open" and status["cheap"]["failures"] >= 2
    assert status["cheap"]["in_flight"] == 0 and status["mid"]["in_flight"] == 0

    _kill(servers["mid"])  # the next one dies too: traffic moves on to "large"
    final = router.invoke("Say hi again.")
    assert _route(final)["chosen"] == "large"
    assert _route(final)["attempts"] == [
        ["mid", "connection"],
        ["mid", "connection"],
        ["large", "ok"],
    ]
