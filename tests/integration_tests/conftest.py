"""Fixtures for integration tests: real servers on 127.0.0.1 only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._support.backends import (  # noqa: F401 - fixtures, registered by import
    chaos_proxy,
    chaos_server,
    local_model_server,
    local_model_server_factory,
)
from tests._support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server shared by the session (flush it in tests that need a clean one)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the test may stop and start."""
    with RedisServer() as server:
        yield server
