"""The shared shell nests child runs under our run for invoke, ainvoke, batch and stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    BaseCallbackHandler,
    CallbackManagerForChainRun,
)
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from oscar_langchain._runnable import (
    ANNOTATION_EVENT,
    OscarRunnable,
    aannotate_run,
    annotate_run,
    child_config,
)


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.runs: dict[UUID, tuple[str, UUID | None, list[str], dict[str, Any]]] = {}
        self.events: list[tuple[str, Any, UUID]] = []

    def on_chain_start(
        self,
        serialized: Any,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        self.runs[run_id] = (
            kw.get("name") or "",
            parent_run_id,
            list(tags or []),
            dict(metadata or {}),
        )

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kw: Any) -> None:
        self.events.append((name, data, run_id))

    def by_name(self, name: str) -> list[UUID]:
        return [rid for rid, (n, *_rest) in self.runs.items() if n == name]


class Wrapper(OscarRunnable[int, int]):
    """Calls the inner runnable once, as a tagged child run, and annotates its own run."""

    inner: Runnable[int, int]

    def _invoke(
        self, input: int, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> int:
        annotate_run(run_manager, {"oscar.test": "sync"})
        return self.inner.invoke(
            input, child_config(config, run_manager, "attempt:1", {"oscar.attempt": 1})
        )

    async def _ainvoke(
        self, input: int, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> int:
        await aannotate_run(run_manager, {"oscar.test": "async"})
        return await self.inner.ainvoke(input, child_config(config, run_manager, "attempt:1"))

    def _stream(
        self, input: int, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> Iterator[int]:
        yield from self.inner.stream(input, child_config(config, run_manager))

    async def _astream(
        self, input: int, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> AsyncIterator[int]:
        async for chunk in self.inner.astream(input, child_config(config, run_manager)):
            yield chunk


def make() -> tuple[Wrapper, Recorder]:
    return Wrapper(inner=RunnableLambda(lambda x: x * 2, name="inner")), Recorder()


def assert_nested(rec: Recorder, count: int = 1) -> None:
    outers = rec.by_name("Wrapper")
    inners = rec.by_name("inner")
    assert len(outers) == count and len(inners) == count
    assert {rec.runs[i][1] for i in inners} == set(outers)


def test_invoke_nests_and_annotates() -> None:
    wrapper, rec = make()
    assert wrapper.invoke(3, {"callbacks": [rec]}) == 6
    assert_nested(rec)
    inner = rec.runs[rec.by_name("inner")[0]]
    assert "attempt:1" in inner[2] and inner[3]["oscar.attempt"] == 1
    assert rec.events == [(ANNOTATION_EVENT, {"oscar.test": "sync"}, rec.by_name("Wrapper")[0])]


async def test_ainvoke_nests_and_annotates() -> None:
    wrapper, rec = make()
    assert await wrapper.ainvoke(3, {"callbacks": [rec]}) == 6
    assert_nested(rec)
    assert rec.events == [(ANNOTATION_EVENT, {"oscar.test": "async"}, rec.by_name("Wrapper")[0])]


def test_batch_nests_each_input() -> None:
    wrapper, rec = make()
    assert wrapper.batch([1, 2, 3], {"callbacks": [rec]}) == [2, 4, 6]
    assert_nested(rec, 3)


async def test_abatch_nests_each_input() -> None:
    wrapper, rec = make()
    assert await wrapper.abatch([1, 2], {"callbacks": [rec]}) == [2, 4]
    assert_nested(rec, 2)


def test_stream_nests() -> None:
    wrapper, rec = make()
    assert list(wrapper.stream(4, {"callbacks": [rec]})) == [8]
    assert_nested(rec)


async def test_astream_nests() -> None:
    wrapper, rec = make()
    assert [c async for c in wrapper.astream(4, {"callbacks": [rec]})] == [8]
    assert_nested(rec)


def test_inside_a_chain() -> None:
    wrapper, rec = make()
    chain = RunnableLambda(lambda x: x + 1, name="pre") | wrapper
    assert chain.invoke(1, {"callbacks": [rec]}) == 4
    (seq,) = [rid for rid, run in rec.runs.items() if run[1] is None]
    assert rec.runs[rec.by_name("Wrapper")[0]][1] == seq
    assert_nested(rec)


class Plain(OscarRunnable[int, int]):
    def _invoke(
        self, input: int, run_manager: CallbackManagerForChainRun, config: RunnableConfig
    ) -> int:
        return -input

    async def _ainvoke(
        self, input: int, run_manager: AsyncCallbackManagerForChainRun, config: RunnableConfig
    ) -> int:
        return -input


async def test_default_stream_is_one_chunk() -> None:
    assert list(Plain().stream(2)) == [-2]
    assert [c async for c in Plain().astream(2)] == [-2]


def _fields(manager: Any) -> tuple[Any, ...]:
    return (
        type(manager),
        manager.handlers,
        manager.inheritable_handlers,
        manager.parent_run_id,
        manager.tags,
        manager.inheritable_tags,
        manager.metadata,
        manager.inheritable_metadata,
    )


async def test_child_manager_equals_get_child() -> None:
    from langchain_core.callbacks import AsyncCallbackManager, CallbackManager

    from oscar_langchain._runnable import child_manager

    rec = Recorder()
    options: dict[str, Any] = {
        "inheritable_tags": ["outer", "shared"],
        "inheritable_metadata": {"user": "u1", "lc_versions": {"core": "1"}},
    }
    sync = CallbackManager([rec], [rec], **options).on_chain_start(None, 1, name="run")
    manager = await AsyncCallbackManager([rec], [rec], **options).on_chain_start(None, 1)
    for run in (sync, manager):
        for tag in (None, "attempt:1", "shared"):
            fast, slow = child_manager(run, tag), run.get_child(tag)
            assert _fields(fast) == _fields(slow), (type(run), tag)
            fast.metadata["lc_versions"]["x"] = "y"  # copies, not shared with the run
            assert "x" not in run.inheritable_metadata["lc_versions"]


def test_child_config_metadata_reaches_the_child_run_and_wins() -> None:
    from langchain_core.callbacks import CallbackManager

    rec = Recorder()
    run = CallbackManager([rec], [rec]).on_chain_start(None, 1, name="outer")
    raw: RunnableConfig = {
        "metadata": {"lc_versions": {"a": "1"}, "k": "config"},
        "run_name": "outer",
    }
    inner = RunnableLambda(lambda x: x, name="inner")
    for extra in ({"k": 1}, {"lc_versions": {"b": "2"}, "k": 1}):
        child = child_config(raw, run, "t", extra)
        assert "run_name" not in child and child["callbacks"].parent_run_id == run.run_id
        inner.invoke(1, child)
        _, parent, tags, metadata = rec.runs[rec.by_name("inner")[-1]]
        assert parent == run.run_id and "t" in tags and metadata["k"] == 1
        assert metadata["lc_versions"] == {"a": "1", **extra.get("lc_versions", {})}


class Explicit(Wrapper):
    """Passes child_config to its inner runnable, so it needs no child context."""

    _explicit_child_configs = True


async def test_explicit_child_configs_still_nest() -> None:
    wrapper, rec = Explicit(inner=RunnableLambda(lambda x: x * 2, name="inner")), Recorder()
    assert wrapper.invoke(3, {"callbacks": [rec], "run_name": "Wrapper"}) == 6
    assert await wrapper.ainvoke(3, {"callbacks": [rec], "run_name": "Wrapper"}) == 6
    assert_nested(rec, 2)
    inner = rec.runs[rec.by_name("inner")[0]]
    assert "attempt:1" in inner[2] and inner[3]["oscar.attempt"] == 1
