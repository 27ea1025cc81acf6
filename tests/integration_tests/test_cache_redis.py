"""Redis backend against a real redis-server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from langchain_core.caches import BaseCache
from langchain_core.runnables import RunnableLambda
from langchain_tests.integration_tests import AsyncCacheTestSuite, SyncCacheTestSuite
from pydantic import BaseModel, create_model

from oscar_langchain.cache import LFU, CachedRunnable, CacheEngine, OscarCache, RedisBackend
from oscar_langchain.cache.backends import Record
from oscar_langchain.cache.core import CacheRequest
from oscar_langchain.embeddings import OfflineEmbeddings
from tests._support.redis_server import RedisServer
from tests.unit_tests.cache_contract import BackendContract

pytestmark = pytest.mark.redis


def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:8]}"


class TestRedisBackendContract(BackendContract):
    @pytest.fixture
    def make_backend(self, redis_server: RedisServer) -> Iterator:
        made: list[RedisBackend] = []
        name = prefix()

        def make(max_size: int | None, eviction: Any = None) -> RedisBackend:
            made.append(RedisBackend(redis_server.url, prefix=name, max_size=max_size,
                                     eviction=eviction))  # fmt: skip
            return made[-1]

        yield make
        made[0].clear()
        for backend in made:
            backend.close()


class TestRedisSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, redis_server: RedisServer) -> BaseCache:
        return OscarCache(CacheEngine(RedisBackend(redis_server.url, prefix=prefix())))


class TestRedisAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, redis_server: RedisServer) -> BaseCache:
        return OscarCache(CacheEngine(RedisBackend(redis_server.url, prefix=prefix())))


class TestRedisSemanticSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, redis_server: RedisServer) -> BaseCache:
        engine = CacheEngine(
            RedisBackend(redis_server.url, prefix=prefix()),
            embed=OfflineEmbeddings(n_features=256).embed_documents,
        )
        return OscarCache(engine)


def test_native_ttl_and_two_processes_share_semantic_entries(redis_server: RedisServer) -> None:
    name = prefix()
    emb = OfflineEmbeddings()
    writer = CacheEngine(RedisBackend(redis_server.url, prefix=name), embed=emb.embed_documents,
                         threshold=0.6, ttl=30)  # fmt: skip
    reader = CacheEngine(RedisBackend(redis_server.url, prefix=name), embed=emb.embed_documents,
                         threshold=0.6)  # fmt: skip
    req = CacheRequest("What is the capital of France?", model="m")
    writer.store(req, "Paris", writer.prepare(req))
    ttl_ms = writer.backend._client.pttl(f"{name}:e:{req.exact_key()}")  # type: ignore[attr-defined]
    assert 0 < ttl_ms <= 30_000
    near = reader.lookup(CacheRequest("Which city is the capital of France?", model="m"))
    assert near.hit and near.semantic and near.value == "Paris"  # found via the shared log
    reader.clear()
    assert not writer.lookup(req).hit


def test_async_paths_use_redis_asyncio(redis_server: RedisServer) -> None:
    async def go() -> tuple[bool, int]:
        backend = RedisBackend(redis_server.url, prefix=prefix(), max_size=2)
        engine = CacheEngine(backend, aembed=OfflineEmbeddings().aembed_documents)
        for q in ("a b c", "d e f", "g h i"):
            req = CacheRequest(q)
            await engine.astore(req, q, await engine.alookup(req))
        hit = await engine.alookup(CacheRequest("g h i"))
        await backend.aclear()
        return hit.hit, int(engine.stats()["evictions"])

    assert asyncio.run(go()) == (True, 1)


def test_corrupt_redis_entry_is_a_miss(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix=prefix())
    engine = CacheEngine(backend)
    req = CacheRequest("q")
    backend._client.hset(f"{backend.prefix}:e:{req.exact_key()}", "junk", "1")
    assert not engine.lookup(req).hit
    assert engine.stats()["errors"] == 1
    backend.put(Record(req.exact_key(), '"ok"'), now=0.0)
    assert engine.lookup(req).value == "ok"


class _Place(BaseModel):
    city: str
    at: dt.datetime


class _Answer(BaseModel):
    place: _Place
    colour: Literal["red", "blue"]


def test_structured_outputs_are_shared_and_stale_ones_overwritten(
    redis_server: RedisServer,
) -> None:
    name, emb = prefix(), OfflineEmbeddings()
    answer = _Answer(place=_Place(city="Paris", at=dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)),
                     colour="blue")  # fmt: skip
    calls: list[str] = []

    def cached(make: Any, types: list[type[BaseModel]]) -> CachedRunnable:
        engine = CacheEngine(RedisBackend(redis_server.url, prefix=name),
                             embed=emb.embed_documents, threshold=0.6)  # fmt: skip
        lam = RunnableLambda(lambda q: (calls.append(q), make())[1])
        return CachedRunnable(runnable=lam, cache=engine, model_id="answers", output_types=types)

    writer = cached(lambda: answer, [_Answer])
    assert writer.invoke("What is the capital of France?") == answer
    reader = cached(lambda: answer, [_Answer])  # another process: revives the shared entry
    hit = reader.invoke("What is the capital city of France?")  # a semantic neighbour
    assert (
        hit == answer and type(hit.place) is _Place and calls == ["What is the capital of France?"]
    )
    moved = create_model("_Answer", __module__="app.v2", place=(_Place, ...),
                         colour=(Literal["red", "blue"], ...))  # fmt: skip
    fresh = cached(lambda: moved(place=answer.place, colour="red"), [moved])
    first = fresh.invoke("What is the capital of France?")  # same schema, unregistered tag
    assert type(first) is moved and fresh.stats()["stale"] == 1 and len(calls) == 2
    assert fresh.invoke("What is the capital of France?").colour == "red"  # overwritten
    assert len(calls) == 2
    writer.cache.clear()


def test_redis_stopped_mid_run_serves_misses_and_recovers(own_redis_server: RedisServer) -> None:
    calls = 0

    def upstream(x: str) -> str:
        nonlocal calls
        calls += 1
        return x.upper()

    async def aupstream(x: str) -> str:
        return upstream(x)

    backend = RedisBackend(own_redis_server.url, prefix=prefix(), socket_timeout=0.2)
    cached = CachedRunnable(runnable=RunnableLambda(upstream, afunc=aupstream),
                            cache=CacheEngine(backend))  # fmt: skip
    assert cached.invoke("a") == "A" and cached.invoke("a") == "A" and calls == 1

    own_redis_server.stop()
    assert [cached.invoke("a") for _ in range(3)] == ["A"] * 3  # misses, not crashes
    assert asyncio.run(cached.ainvoke("b")) == "B"
    assert calls == 5
    errors_during_outage = cached.stats()["errors"]
    assert errors_during_outage == 9  # 4 gets, 4 puts and the size() in stats(): no crash

    own_redis_server.start()  # empty again: --save "" keeps nothing
    assert cached.invoke("a") == "A" and calls == 6
    assert cached.invoke("a") == "A" and calls == 6  # cached again: recovered
    assert asyncio.run(cached.ainvoke("c")) == "C"
    assert asyncio.run(cached.ainvoke("c")) == "C" and calls == 7
    assert cached.stats()["errors"] == errors_during_outage  # no error since the restart


def test_lfu_scores_in_redis_follow_the_policy(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix=prefix(), max_size=10, eviction=LFU())
    backend.put(Record("a", '"1"'), now=0.0)
    backend.get("a", now=1.0)
    backend.get("a", now=2.0)
    client = backend._client
    seq = int(client.get(f"{backend.prefix}:uses"))
    assert client.zscore(f"{backend.prefix}:order", "a") == LFU().score(3, seq)
    assert client.hget(f"{backend.prefix}:e:a", "uses") == b"3"
    backend.clear()


def _connections(server: RedisServer) -> int:
    probe = RedisBackend(server.url, prefix=prefix())
    try:
        return len(probe._client.client_list()) - 1  # not counting the probe itself
    finally:
        probe.close()


def test_async_clients_close_with_their_loops(own_redis_server: RedisServer) -> None:
    backend = RedisBackend(own_redis_server.url, prefix=prefix())
    engine = CacheEngine(backend)
    backend.size()  # the sync client's connection
    for _ in range(20):  # a script, a worker thread or a test: a new loop each time
        asyncio.run(engine.alookup(CacheRequest("q")))
    assert _connections(own_redis_server) == 1 and backend._aclients == {}

    async def used_then_closed() -> int:
        await engine.alookup(CacheRequest("q"))
        during = _connections(own_redis_server)
        await backend.aclose()
        return during

    assert asyncio.run(used_then_closed()) == 2
    assert _connections(own_redis_server) == 0


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the abandoned client's sockets
def test_client_of_a_loop_closed_without_shutdown_is_dropped(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix=prefix())
    loop = asyncio.new_event_loop()
    loop.run_until_complete(backend.aget("k", now=0.0))
    loop.close()  # no shutdown_asyncgens: the client could not be closed on its loop
    asyncio.run(backend.aget("k", now=0.0))
    assert loop not in backend._aclients
    backend.close()


def test_entries_redis_expired_leave_the_order_set(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix=prefix())  # TTL, no max_size
    client, order = backend._client, f"{backend.prefix}:order"
    now = time.time()
    for i in range(30):
        backend.put(Record(f"t{i}", '"v"', expires_at=now + 0.05), now=now)
    for i in range(3):
        backend.put(Record(f"p{i}", '"v"'), now=now)
    assert backend.size() == 33
    time.sleep(0.15)  # Redis's native PEXPIRE drops the 30 hashes
    assert client.zcard(order) == 33  # nothing has noticed yet
    assert backend.get("t0", now=time.time()) is None
    assert asyncio.run(backend.aget("t1", now=time.time())) is None
    assert client.zcard(order) == 31  # each read of a gone hash forgets its key
    assert backend.size() == 3 and client.zcard(order) == 3  # size() forgets the rest
    assert client.zcard(f"{backend.prefix}:expiry") == 0
    backend.clear()
    backend.close()


def test_writes_forget_expired_keys_without_reads(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix=prefix())
    order = f"{backend.prefix}:order"
    now = time.time()
    for i in range(40):
        backend.put(Record(f"t{i}", '"v"', expires_at=now + 0.05), now=now)
    time.sleep(0.15)
    for i in range(10):  # each write forgets a few of the earliest expired keys
        backend.put(Record(f"n{i}", '"v"', expires_at=time.time() + 60), now=time.time())
    assert backend._client.zcard(order) == 10
    backend.clear()
    backend.close()
