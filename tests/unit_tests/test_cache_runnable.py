from __future__ import annotations

import asyncio
import threading
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import ConfigurableField, RunnableConfig, RunnableLambda
from langchain_core.tracers.context import collect_runs
from pydantic import Field

from oscar_langchain._runnable import ANNOTATION_EVENT
from oscar_langchain.cache import CachedRunnable, CacheEngine, semantic_engine
from oscar_langchain.cache.backends import MemoryBackend, Record
from oscar_langchain.cache.core import TemperaturePolicy
from oscar_langchain.embeddings import OfflineEmbeddings


class Annotations(BaseCallbackHandler):
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if name == ANNOTATION_EVENT:
            self.seen.append(data)


class Counter:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, x: Any) -> str:
        self.calls.append(x)
        return f"answer to {x}"


def chat(*answers: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(a) for a in answers]))


def test_invoke_hits_and_annotates() -> None:
    handler = Annotations()
    cached = CachedRunnable(runnable=FakeListChatModel(responses=["Paris", "Lyon"]))
    config = {"callbacks": [handler]}
    first = cached.invoke("Capital of France?", config)
    second = cached.invoke("Capital  of France?", config)  # whitespace-normalised
    assert first.content == second.content == "Paris"
    assert [a["oscar.cache.hit"] for a in handler.seen] == [False, True]
    assert handler.seen[1]["oscar.cache.similarity"] == 1.0
    assert handler.seen[1]["oscar.cache.key"] == handler.seen[0]["oscar.cache.key"]


def test_batch_calls_only_the_misses() -> None:
    counter = Counter()
    cached = CachedRunnable(runnable=RunnableLambda(counter))
    cached.invoke("a")
    assert cached.batch(["a", "b", "a", "c"], {"max_concurrency": 1}) == [
        "answer to a",
        "answer to b",
        "answer to a",
        "answer to c",
    ]
    assert counter.calls == ["a", "b", "c"]
    assert asyncio.run(cached.abatch(["b", "d"])) == ["answer to b", "answer to d"]
    assert counter.calls == ["a", "b", "c", "d"]


def test_stream_miss_streams_through_and_hit_replays_chunks() -> None:
    cached = CachedRunnable(runnable=chat("hello big world"))
    live = list(cached.stream("hi"))
    assert len(live) > 1 and all(isinstance(c, AIMessageChunk) for c in live)
    replay = list(cached.stream("hi"))
    assert [c.content for c in replay] == [c.content for c in live]
    whole = cached.invoke("hi")  # invoke on a stream-stored entry: the assembled message
    assert isinstance(whole, AIMessage) and whole.content == "hello big world"


def test_stream_of_an_invoke_stored_entry_is_one_chunk() -> None:
    cached = CachedRunnable(runnable=chat("one answer"))
    cached.invoke("q")
    chunks = list(cached.stream("q"))
    assert len(chunks) == 1 and isinstance(chunks[0], AIMessageChunk)
    assert chunks[0].content == "one answer"


def test_astream_and_ainvoke() -> None:
    async def go() -> tuple[list[str], list[str], str]:
        cached = CachedRunnable(runnable=chat("async streamed answer"))
        live = [c.content async for c in cached.astream("q")]
        replay = [c.content async for c in cached.astream("q")]
        return live, replay, (await cached.ainvoke("q")).content

    live, replay, whole = asyncio.run(go())
    assert live == replay and "".join(live) == whole == "async streamed answer"


def test_partial_stream_is_not_stored() -> None:
    counter = Counter()
    cached = CachedRunnable(runnable=RunnableLambda(counter))
    stream = cached.stream("x")
    next(stream)
    stream.close()
    cached.invoke("x")
    assert len(counter.calls) == 2 or cached.stats()["size"] == 1


def test_inner_runs_nest_under_the_cache_run() -> None:
    cached = CachedRunnable(runnable=chat("a", "b", "c"))
    for call in (
        lambda: cached.invoke("one"),
        lambda: cached.batch(["two"]),
        lambda: list(cached.stream("three")),
    ):
        with collect_runs() as runs:
            call()
        (root,) = [r for r in runs.traced_runs if r.parent_run_id is None]
        assert [child.parent_run_id for child in root.child_runs] == [root.id]


def test_messages_keep_conversation_context_and_semantic_hits() -> None:
    emb = OfflineEmbeddings()
    cached = CachedRunnable(
        runnable=chat("Paris", "Paris again", "Berlin"),
        cache=semantic_engine(emb, threshold=0.6),
    )
    sys = SystemMessage("Be brief.")
    cached.invoke([sys, HumanMessage("What is the capital of France?")])
    handler = Annotations()
    hit = cached.invoke(
        [sys, HumanMessage("Which city is the capital of France?")], {"callbacks": [handler]}
    )
    assert hit.content == "Paris" and handler.seen[0]["oscar.cache.semantic"]
    assert 0.6 <= handler.seen[0]["oscar.cache.similarity"] < 1.0
    other = cached.invoke(
        [SystemMessage("Be verbose."), HumanMessage("What is the capital of France?")]
    )
    assert other.content == "Paris again"
    assert cached.invoke([sys, HumanMessage("What is the capital of Germany?")]).content == "Berlin"
    assert cached.stats()["rejected"] == 1


def test_documents_and_dict_inputs_are_cached() -> None:
    counter = Counter()
    retriever_like = RunnableLambda(lambda q: (counter(q), [Document("doc about " + q)])[1])
    cached = CachedRunnable(runnable=retriever_like)
    assert cached.invoke("cats")[0].page_content == "doc about cats"
    assert cached.invoke("cats")[0].page_content == "doc about cats"
    chain = CachedRunnable(runnable=RunnableLambda(lambda d: f"{d['question']}/{d['k']}"))
    assert chain.invoke({"question": "q", "k": 1}) == "q/1"
    assert chain.invoke({"question": "q", "k": 2}) == "q/2"  # other fields are context
    assert chain.invoke({"question": "q", "k": 1}) == "q/1"
    assert counter.calls == ["cats"] and chain.stats()["hits"] == 1


def test_unserialisable_outputs_are_passed_through_uncached() -> None:
    cached = CachedRunnable(runnable=RunnableLambda(lambda x: object()))
    assert cached.invoke("x") is not cached.invoke("x")
    assert cached.stats()["errors"] == 2 and cached.stats()["size"] == 0


def test_unrevivable_entry_is_a_miss() -> None:
    counter = Counter()
    backend = MemoryBackend()
    cached = CachedRunnable(runnable=RunnableLambda(counter), cache=CacheEngine(backend))
    key = cached._request("x").exact_key()
    bad = '{"value": {"lc": 1, "type": "constructor", "id": ["os", "system"], "kwargs": {}}}'
    backend.put(Record(key, bad), now=0.0)
    assert cached.invoke("x") == "answer to x"
    assert counter.calls == ["x"] and cached.stats()["errors"] == 1


def test_sampling_requests_bypass_single_flight_and_cache() -> None:
    class HotModel(FakeListChatModel):
        temperature: float = 0.9

    model = HotModel(responses=["a", "b"])
    cached = CachedRunnable(runnable=model, model_id="fake")
    assert cached.invoke("q").content == "a" and cached.invoke("q").content == "b"
    assert cached.stats()["bypassed"] == 2
    kept = CachedRunnable(
        runnable=model, cache=CacheEngine(temperature_policy=TemperaturePolicy("cache"))
    )
    assert kept.invoke("q").content == kept.invoke("q").content


class _Hot(FakeListChatModel):
    temperature: float = 0.9


class _Cold(FakeListChatModel):
    temperature: float = 0.0


def _answers(cached: CachedRunnable, value: Any, config: RunnableConfig | None = None) -> list[Any]:
    out = [cached.invoke(value, config) for _ in range(2)]
    return [getattr(o, "content", o) for o in out]


@pytest.mark.parametrize(
    ("name", "runnable", "value"),
    [
        (
            "prompt | model",
            ChatPromptTemplate.from_template("{q}") | _Hot(responses=["a", "b"]),
            {"q": "x"},
        ),
        ("model | parser", _Hot(responses=["a", "b"]) | StrOutputParser(), "x"),
        ("with_retry", _Hot(responses=["a", "b"]).with_retry(), "x"),
        (
            "with_fallbacks",
            _Cold(responses=["a", "b"]).with_fallbacks([_Hot(responses=["c"])]),
            "x",
        ),
        (
            "chain of a hot binding",
            RunnableLambda(str) | _Cold(responses=["a", "b"]).bind(temperature=0.9),
            "x",
        ),
        (
            "with_config of a chain",
            (_Hot(responses=["a", "b"]) | StrOutputParser()).with_config(tags=["t"]),
            "x",
        ),
    ],
)
def test_sampling_models_inside_a_runnable_bypass_the_cache(
    name: str, runnable: Any, value: Any
) -> None:
    cached = CachedRunnable(runnable=runnable)
    assert _answers(cached, value) == ["a", "b"], name
    assert cached.stats()["bypassed"] == 2 and cached.stats()["size"] == 0


def test_sampling_routes_and_failover_candidates_bypass_the_cache() -> None:
    from oscar_langchain.failover import with_failover
    from oscar_langchain.routing import Route
    from oscar_langchain.routing.router import RouterRunnable

    failover = CachedRunnable(
        runnable=with_failover(_Hot(responses=["a", "b"]), _Cold(responses=["c"]))
    )
    assert _answers(failover, "x") == ["a", "b"]
    router = RouterRunnable(routes=[Route(name="hot", runnable=_Hot(responses=["a", "b"]))])
    assert _answers(CachedRunnable(runnable=router), "x") == ["a", "b"]


def test_a_per_call_configurable_temperature_bypasses_the_cache() -> None:
    model = _Cold(responses=["a", "b"]).configurable_fields(
        temperature=ConfigurableField(id="temp")
    )
    cached = CachedRunnable(runnable=model)
    # Each configured call builds a fresh model (so the fake answers "a" again): what
    # tells a bypass is that nothing is stored.
    _answers(cached, "x", {"configurable": {"temp": 0.9}})
    assert cached.stats()["bypassed"] == 2 and cached.stats()["size"] == 0
    _answers(cached, "x", {"configurable": {"temp": 0.0}})
    assert cached.stats()["bypassed"] == 2 and cached.stats()["hits"] == 1


def test_a_deterministic_chain_is_cached_with_its_key_unchanged() -> None:
    chain = RunnableLambda(str) | _Cold(responses=["a", "b"]) | StrOutputParser()
    cached = CachedRunnable(runnable=chain)
    assert _answers(cached, "x") == ["a", "a"] and cached.stats()["bypassed"] == 0
    assert "temperature" not in cached._request("x").params


def test_sync_single_flight_across_threads() -> None:
    gate = threading.Event()
    calls = Counter()

    def slow(x: str) -> str:
        gate.wait(timeout=10)
        return calls(x)

    cached = CachedRunnable(runnable=RunnableLambda(slow))
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(cached.invoke("q"))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    while len(cached._flight._calls) == 0:
        pass
    gate.set()
    for t in threads:
        t.join()
    assert results == ["answer to q"] * 8
    assert len(calls.calls) <= 2  # threads arriving after the flight ends read the cache
    assert cached.stats()["hits"] + len(calls.calls) <= 8


def test_thousand_concurrent_identical_async_requests_make_one_upstream_call() -> None:
    calls = 0

    async def upstream(x: str) -> str:
        nonlocal calls
        calls += 1
        for _ in range(50):
            await asyncio.sleep(0)  # stay in flight while the others arrive
        return x.upper()

    async def go() -> list[str]:
        cached = CachedRunnable(runnable=RunnableLambda(lambda x: x, afunc=upstream))
        return await asyncio.gather(*(cached.ainvoke("same question") for _ in range(1000)))

    results = asyncio.run(go())
    assert results == ["SAME QUESTION"] * 1000
    assert calls == 1


def test_async_leader_cancelled_hands_over_to_a_follower() -> None:
    calls = 0

    async def upstream(x: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(3600)
        return x

    async def go() -> str:
        cached = CachedRunnable(runnable=RunnableLambda(lambda x: x, afunc=upstream))
        leader = asyncio.ensure_future(cached.ainvoke("q"))
        for _ in range(20):
            await asyncio.sleep(0)
        follower = asyncio.ensure_future(cached.ainvoke("q"))
        for _ in range(20):
            await asyncio.sleep(0)
        leader.cancel()
        return await follower

    assert asyncio.run(go()) == "q" and calls == 2


def test_errors_propagate_to_every_waiter_and_are_not_cached() -> None:
    attempts = 0

    async def flaky(x: str) -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        raise ValueError("upstream failed")

    async def go() -> list[Any]:
        cached = CachedRunnable(runnable=RunnableLambda(lambda x: x, afunc=flaky))
        return await asyncio.gather(
            *(cached.ainvoke("q") for _ in range(5)), return_exceptions=True
        )

    results = asyncio.run(go())
    assert all(isinstance(r, ValueError) for r in results) and attempts == 1
    failing = CachedRunnable(runnable=RunnableLambda(lambda x: 1 / 0))
    with pytest.raises(ZeroDivisionError):
        failing.invoke("x")
    assert failing.stats()["size"] == 0


def test_configurable_alternatives_and_fields_are_in_the_key() -> None:
    a = FakeListChatModel(responses=["from A"])
    b = FakeListChatModel(responses=["from B"])
    alternatives = CachedRunnable(
        runnable=a.configurable_alternatives(ConfigurableField(id="llm"), default_key="a", b=b)
    )
    assert alternatives.invoke("hi", {"configurable": {"llm": "a"}}).content == "from A"
    assert alternatives.invoke("hi", {"configurable": {"llm": "b"}}).content == "from B"
    assert alternatives.invoke("hi", {"configurable": {"llm": "b"}}).content == "from B"
    fields = CachedRunnable(
        runnable=FakeListChatModel(responses=["default"]).configurable_fields(
            responses=ConfigurableField(id="responses")
        )
    )
    assert fields.invoke("hi").content == "default"
    assert fields.invoke("hi", {"configurable": {"responses": ["other"]}}).content == "other"
    # sessions, checkpoints and framework internals do not change the answer: still a hit
    session = {"thread_id": "t-2", "checkpoint_ns": "n", "__pregel_send": object()}
    assert fields.invoke("hi", {"configurable": session}).content == "default"
    assert fields.stats()["hits"] == 1


def test_retriever_search_kwargs_are_in_the_key() -> None:
    class Retriever(BaseRetriever):
        search_kwargs: dict[str, Any] = Field(default_factory=dict)

        def _get_relevant_documents(self, query: str, **kwargs: Any) -> list[Document]:
            return [Document(page_content=f"{query} k={self.search_kwargs.get('k', 4)}")]

    retriever = Retriever().configurable_fields(search_kwargs=ConfigurableField(id="search"))
    cached = CachedRunnable(runnable=retriever)
    assert cached.invoke("q")[0].page_content == "q k=4"
    assert cached.invoke("q", {"configurable": {"search": {"k": 1}}})[0].page_content == "q k=1"


def test_single_flight_followers_with_other_configurables_do_not_share() -> None:
    calls: list[str] = []

    async def answer(x: str, config: RunnableConfig) -> str:
        who = config["configurable"]["who"]
        calls.append(who)
        await gate.wait()
        return f"{x} from {who}"

    cached = CachedRunnable(runnable=RunnableLambda(answer))

    async def go() -> list[str]:
        tasks = [
            asyncio.ensure_future(cached.ainvoke("q", {"configurable": {"who": w}}))
            for w in ("a", "b", "a")
        ]
        for _ in range(100):  # let every task reach the model or its flight (no clock)
            await asyncio.sleep(0)
        gate.set()
        return list(await asyncio.gather(*tasks))

    gate = asyncio.Event()
    assert asyncio.run(go()) == ["q from a", "q from b", "q from a"]
    assert sorted(calls) == ["a", "b"]  # the second "a" followed the first
