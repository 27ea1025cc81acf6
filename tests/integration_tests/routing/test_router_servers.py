"""Routing across two real OpenAI-compatible HTTP servers on 127.0.0.1 (chaos servers)."""

from __future__ import annotations

import pytest

from oscar_langchain.failover_policy import RetryPolicy
from oscar_langchain.models import ModelInfo, ModelRegistry
from oscar_langchain.routing import Cheapest, Route
from oscar_langchain.routing.router import RouterRunnable
from oscar_langchain.testing import ChaosServer, ok

pytest.importorskip("langchain_openai")


def test_long_prompt_goes_to_fitting_route_and_killed_server_loses_nothing():
    from langchain_openai import ChatOpenAI

    registry = ModelRegistry(
        [
            ModelInfo(name="srv-small", context_window=1024, input_price=0.1, output_price=0.4),
            ModelInfo(name="srv-large", context_window=32_768, input_price=3.0, output_price=9.0),
        ]
    )
    with ChaosServer(default=ok("small")) as small, ChaosServer(default=ok("large")) as large:

        def chat(server: ChaosServer) -> ChatOpenAI:
            return ChatOpenAI(
                base_url=server.base_url, api_key="test", model="chaos", max_retries=0, timeout=2
            )

        router = RouterRunnable(
            routes=[
                Route(name="small", runnable=chat(small), model="srv-small"),
                Route(name="large", runnable=chat(large), model="srv-large"),
            ],
            selector=Cheapest(),
            registry=registry,
            default_output_tokens=128,
            retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, jitter=0.0),
        )
        assert router.invoke("hello").content == "small"
        out = router.invoke("Summarise: " + "numbers went up again. " * 400)
        assert out.content == "large"
        assert "context window" in out.response_metadata["oscar_route"]["rejected"]["small"]
        served_by_large = len(large.chat_requests)
        small.stop()  # the chosen server dies
        answers = [router.invoke(f"question {i}").content for i in range(5)]
        assert answers == ["large"] * 5  # no request lost
        assert len(large.chat_requests) == served_by_large + 5
