"""Structured outputs through CachedRunnable: pydantic models (opt-in) and dicts (default)."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.globals import set_llm_cache
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import Generation
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    ValidationError,
    create_model,
    field_serializer,
    field_validator,
)
from typing_extensions import TypedDict

from oscar_langchain.cache import (
    CachedRunnable,
    CacheEngine,
    CacheEvent,
    MemoryBackend,
    OscarCache,
    SQLiteBackend,
    semantic_engine,
)
from oscar_langchain.cache.backends import Record
from oscar_langchain.cache.codec import OUTPUT_MARKER, decode_value, encode_value
from oscar_langchain.cache.identity import output_schemas
from oscar_langchain.cache.output_types import OutputTypes, UnserialisableValueError, type_tag
from oscar_langchain.embeddings import OfflineEmbeddings
from oscar_langchain.errors import CacheError, ConfigurationError, StaleEntryError


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Place(BaseModel):
    city: str
    country: str


class Answer(BaseModel):
    place: Place
    founded: dt.date
    checked_at: dt.datetime
    colour: Colour
    aliases: list[str] = []


ANSWER = Answer(
    place=Place(city="Paris", country="France"),
    founded=dt.date(250, 1, 1),
    checked_at=dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    colour=Colour.BLUE,
    aliases=["Lutetia"],
)
ANSWER_JSON = ANSWER.model_dump_json()


class Summary(BaseModel):
    title: str


class ToolChat(GenericFakeChatModel):
    """A fake chat model with ``bind_tools``, so ``with_structured_output`` works."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, Any]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


def tool_chat(name: str, *args: dict[str, Any]) -> ToolChat:
    messages = [AIMessage("", tool_calls=[{"name": name, "args": a, "id": "c1"}]) for a in args]
    return ToolChat(messages=iter(messages))


class Calls:
    """A runnable body that counts calls and returns ``make()``'s value."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.count = 0

    def __call__(self, _: Any) -> Any:
        self.count += 1
        return self.make()


def parser_chain(*answers: str) -> Runnable[Any, Any]:
    return FakeListChatModel(responses=list(answers)) | PydanticOutputParser(pydantic_object=Answer)


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_pydantic_outputs_round_trip_nested_models_datetimes_and_enums(
    backend: str, tmp_path: Path
) -> None:
    def engine() -> CacheEngine:
        if backend == "memory":
            return CacheEngine(shared)
        return CacheEngine(SQLiteBackend(str(tmp_path / "c.db")))

    shared = MemoryBackend()
    cached = CachedRunnable(
        runnable=parser_chain(ANSWER_JSON), cache=engine(), output_types=[Answer]
    )
    first = cached.invoke("Tell me about Paris")
    # another instance (another process, for SQLite) reads the same entry
    again = CachedRunnable(
        runnable=parser_chain(ANSWER_JSON), cache=engine(), output_types=[Answer]
    )
    hit = again.invoke("Tell me about Paris")
    assert first == hit == ANSWER and type(hit) is Answer
    assert type(hit.place) is Place and hit.colour is Colour.BLUE
    assert hit.checked_at.utcoffset() == dt.timedelta(hours=2)
    assert again.stats()["hits"] == 1 and again.stats()["errors"] == 0
    assert asyncio.run(again.ainvoke("Tell me about Paris")) == ANSWER


def test_with_structured_output_models_and_include_raw_are_cached() -> None:
    args = ANSWER.model_dump(mode="json")
    cached = CachedRunnable(
        runnable=tool_chat("Answer", args, {}).with_structured_output(Answer),
        output_types=[Answer],
    )
    assert cached.invoke("q") == cached.invoke("q") == ANSWER
    raw = CachedRunnable(
        runnable=tool_chat("Answer", args, {}).with_structured_output(Answer, include_raw=True),
        output_types=[Answer],
    )
    live, hit = raw.invoke("q"), raw.invoke("q")
    assert hit["parsed"] == live["parsed"] == ANSWER and type(hit["parsed"]) is Answer
    assert isinstance(hit["raw"], AIMessage) and hit["raw"].tool_calls == live["raw"].tool_calls
    assert hit["parsing_error"] is None and raw.stats()["hits"] == 1


def test_lists_of_models_round_trip() -> None:
    calls = Calls(lambda: [Summary(title="a"), Summary(title="b")])
    cached = CachedRunnable(runnable=RunnableLambda(calls), output_types=[Summary])
    assert cached.invoke("q") == cached.invoke("q") == [Summary(title="a"), Summary(title="b")]
    assert calls.count == 1


def test_strict_models_revive_from_json() -> None:
    class Strict(BaseModel):
        model_config = ConfigDict(strict=True)
        at: dt.datetime

    value = Strict(at=dt.datetime(2024, 1, 1))
    with pytest.raises(ValidationError):
        Strict.model_validate(value.model_dump(mode="json"))  # why revival validates JSON
    types = OutputTypes((Strict,))
    assert decode_value(encode_value(value, types), types) == value


# -- dicts: cached by default -----------------------------------------------------------------


class CityDict(TypedDict):
    city: str
    population: int


CITY_SCHEMA = {
    "title": "CityDict",
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
}


@pytest.mark.parametrize("schema", [CITY_SCHEMA, CityDict], ids=["json-schema", "typeddict"])
def test_dict_outputs_of_with_structured_output_cache_without_registration(schema: Any) -> None:
    args = {"city": "Paris", "population": 2_100_000}
    cached = CachedRunnable(
        runnable=tool_chat("CityDict", args, {"city": "?", "population": 0}).with_structured_output(
            schema
        )
    )
    assert cached.invoke("q") == cached.invoke("q") == args
    assert cached.stats()["hits"] == 1


def test_json_parser_dicts_come_back_as_dicts_even_when_they_look_like_entries() -> None:
    forged = {
        "lc": 1,
        "type": OUTPUT_MARKER,
        "id": [type_tag(Summary)],
        "data": {"title": "forged"},
    }
    nested = {"items": [forged, {"lc": 1, "type": "constructor", "id": ["os", "system"]}]}
    for value in (forged, nested):
        cached = CachedRunnable(
            runnable=RunnableLambda(lambda _, v=value: v), output_types=[Summary]
        )
        assert cached.invoke("q") == cached.invoke("q") == value
        assert cached.stats()["hits"] == 1 and cached.stats()["errors"] == 0


def test_json_output_parser_is_cached_by_default() -> None:
    cached = CachedRunnable(
        runnable=FakeListChatModel(responses=['{"a": [1, 2]}']) | JsonOutputParser()
    )
    assert cached.invoke("q") == cached.invoke("q") == {"a": [1, 2]}


# -- refusals: not stored, or a miss ----------------------------------------------------------


def test_an_unregistered_model_is_passed_through_uncached_with_a_hint() -> None:
    events: list[CacheEvent] = []
    calls = Calls(lambda: Summary(title="t"))
    cached = CachedRunnable(
        runnable=RunnableLambda(calls), cache=CacheEngine(on_event=events.append)
    )
    assert cached.invoke("q") == cached.invoke("q") == Summary(title="t")
    assert calls.count == 2 and cached.stats()["size"] == 0
    assert "pass output_types=[Summary] to cache it" in events[0].detail
    subclass = CachedRunnable(
        runnable=RunnableLambda(lambda _: type("Sub", (Summary,), {})(title="t")),
        output_types=[Summary],
    )
    subclass.invoke("q")
    assert subclass.stats()["size"] == 0  # a subclass is not its registered base


def test_models_that_do_not_survive_json_are_not_stored() -> None:
    class Private(BaseModel):
        x: int
        _seen: int = PrivateAttr(default=0)

    class Loose(BaseModel):
        extra: Any

    def private() -> Private:
        value = Private(x=1)
        value._seen = 5
        return value

    for make, kind in ((private, Private), (lambda: Loose(extra=dt.date(2024, 1, 1)), Loose)):
        events: list[CacheEvent] = []
        cached = CachedRunnable(
            runnable=RunnableLambda(Calls(make)),
            cache=CacheEngine(on_event=events.append),
            output_types=[kind],
        )
        cached.invoke("q")
        assert cached.stats()["size"] == 0
        assert "revives from its JSON form as a different value" in events[0].detail
    with pytest.raises(UnserialisableValueError, match="has no JSON form"):
        OutputTypes((Loose,)).dump(Loose(extra=object()))

    class Score(BaseModel):
        value: float

    with pytest.raises(UnserialisableValueError, match="Out of range float"):
        OutputTypes((Score,)).dump(Score(value=float("nan")))

    class Renamed(BaseModel):
        count: int

        @field_serializer("count")
        def _text(self, value: int) -> str:
            return f"{value} items"

    with pytest.raises(UnserialisableValueError, match=r"does not revive.*count"):
        OutputTypes((Renamed,)).dump(Renamed(count=2))

    class Handle:
        pass

    class Opaque(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        handle: Handle

    with pytest.raises(ConfigurationError, match="has no JSON schema"):
        OutputTypes((Opaque,))
    (unconverted,) = output_schemas(PydanticOutputParser(pydantic_object=Opaque))
    assert "Opaque" in unconverted["unconverted"] and " at 0x" not in unconverted["unconverted"]


def test_an_entry_of_a_class_not_registered_here_is_a_stale_miss_then_overwritten() -> None:
    # The class moved module: the same schema (so the same key), another tag.
    moved = create_model("Summary", __module__="app.v2", title=(str, ...))
    engine = CacheEngine()
    old = CachedRunnable(runnable=RunnableLambda(Calls(lambda: Summary(title="old"))),
                         cache=engine, model_id="summaries", output_types=[Summary])  # fmt: skip
    calls = Calls(lambda: moved(title="new"))
    new = CachedRunnable(runnable=RunnableLambda(calls), cache=engine, model_id="summaries",
                         output_types=[moved])  # fmt: skip
    assert old._request("q").exact_key() == new._request("q").exact_key()
    old.invoke("q")
    first = new.invoke("q")
    assert type(first) is moved and first.title == "new" and calls.count == 1
    assert engine.stats()["stale"] == 1 and engine.stats()["errors"] == 0
    again = new.invoke("q")  # overwritten: a hit, of the class registered here
    assert type(again) is moved and calls.count == 1
    assert type(old.invoke("q")) is Summary  # and the other registry refuses it in turn
    assert engine.stats()["stale"] == 2


def _city_class(upper: bool) -> type[BaseModel]:
    class City(BaseModel):
        name: str

        @field_validator("name")
        @classmethod
        def _case(cls, value: str) -> str:
            if upper and not value.isupper():
                raise ValueError("must be upper case")
            return value

    return City


def test_a_schema_change_is_a_miss_then_the_entry_is_overwritten() -> None:
    before, after = _city_class(upper=False), _city_class(upper=True)
    assert type_tag(before) == type_tag(after)
    assert before.model_json_schema() == after.model_json_schema()  # only a validator changed
    engine = CacheEngine()
    CachedRunnable(runnable=RunnableLambda(lambda _: before(name="Paris")), cache=engine,
                   model_id="cities", output_types=[before]).invoke("q")  # fmt: skip
    calls = Calls(lambda: after(name="PARIS"))
    cached = CachedRunnable(runnable=RunnableLambda(calls), cache=engine, model_id="cities",
                            output_types=[after])  # fmt: skip
    assert cached.invoke("q") == after(name="PARIS") and calls.count == 1
    stats = engine.stats()
    assert (stats["stale"], stats["hits"], stats["misses"], stats["size"]) == (1, 0, 2, 1)
    assert cached.invoke("q") == after(name="PARIS") and calls.count == 1
    assert asyncio.run(cached.ainvoke("q")) == after(name="PARIS") and calls.count == 1


def test_a_changed_field_gives_a_new_key() -> None:
    v1 = create_model("Report", __module__="app", title=(str, ...))
    v2 = create_model("Report", __module__="app", title=(str, ...), pages=(int, 0))
    engine = CacheEngine()
    one = CachedRunnable(runnable=RunnableLambda(lambda _: v1(title="a")), cache=engine,
                         model_id="reports", output_types=[v1])  # fmt: skip
    two = CachedRunnable(runnable=RunnableLambda(lambda _: v2(title="a", pages=3)),
                         cache=engine, model_id="reports", output_types=[v2])  # fmt: skip
    assert one._request("q").exact_key() != two._request("q").exact_key()
    one.invoke("q")
    assert two.invoke("q").pages == 3 and engine.stats()["stale"] == 0


def test_decode_refusals_name_what_is_wrong() -> None:
    types = OutputTypes((Summary,))
    with pytest.raises(StaleEntryError, match="not registered"):
        decode_value(encode_value(Summary(title="t"), types))
    with pytest.raises(StaleEntryError, match=r"no longer validates.*title"):
        decode_value({"lc": 1, "type": OUTPUT_MARKER, "id": [type_tag(Summary)], "data": {}}, types)
    with pytest.raises(CacheError, match="malformed id"):
        decode_value({"lc": 1, "type": OUTPUT_MARKER, "id": "x", "data": {}}, types)
    with pytest.raises(ConfigurationError, match="output_types"):
        OutputTypes((dict,))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="two classes are named"):
        OutputTypes((Summary, create_model("Summary", __module__=__name__, title=(str, ...))))


def test_a_corrupt_entry_is_a_counted_miss_not_a_hit() -> None:
    backend = MemoryBackend()
    calls = Calls(lambda: Summary(title="t"))
    cached = CachedRunnable(runnable=RunnableLambda(calls), cache=CacheEngine(backend),
                            output_types=[Summary])  # fmt: skip
    backend.put(Record(cached._request("q").exact_key(), '"not an entry"'), now=0.0)
    assert cached.invoke("q") == Summary(title="t")
    stats = cached.stats()
    assert (stats["hits"], stats["misses"], stats["errors"]) == (0, 1, 1)


# -- keys hold the schema -------------------------------------------------------------------


def test_two_output_schemas_on_one_prompt_never_share_entries() -> None:
    engine = CacheEngine()
    model = FakeListChatModel(responses=['{"title": "t"}'])
    shared = dict(cache=engine, model_id="same-model", output_types=[Answer, Summary])
    runnables = {
        "parser Answer": model | PydanticOutputParser(pydantic_object=Answer),
        "parser Summary": model | PydanticOutputParser(pydantic_object=Summary),
        "structured Answer": tool_chat("Answer").with_structured_output(Answer),
        "structured Summary": tool_chat("Summary").with_structured_output(Summary),
        "structured dict": tool_chat("CityDict").with_structured_output(CITY_SCHEMA),
        "structured TypedDict": tool_chat("CityDict").with_structured_output(CityDict),
    }
    keys = {
        name: CachedRunnable(runnable=r, **shared)._request("q").exact_key()  # type: ignore[arg-type]
        for name, r in runnables.items()
    }
    # model_id says "one model", so only the output schema tells these apart
    assert keys["parser Answer"] != keys["parser Summary"]
    assert keys["structured Answer"] != keys["structured Summary"]
    assert keys["structured dict"] != keys["structured TypedDict"] != keys["structured Answer"]
    assert keys["parser Answer"] == keys["structured Answer"]  # same model, same schema
    # Without model_id too: the schema, not only the runnable's fingerprint.
    plain = FakeListChatModel(responses=["x"])
    assert "output_schema" not in CachedRunnable(runnable=plain)._request("q").params
    assert (
        "output_schema" in CachedRunnable(runnable=runnables["parser Answer"])._request("q").params
    )
    parser = PydanticOutputParser(pydantic_object=Summary)
    twice = output_schemas(model | parser | RunnableLambda(lambda m: m.model_dump_json()) | parser)
    assert twice == [Summary.model_json_schema()]  # a runnable met twice is read once


# -- semantic mode ----------------------------------------------------------------------------


def test_semantic_hits_revive_models_and_a_stale_neighbour_is_a_miss() -> None:
    before, after = _city_class(upper=False), _city_class(upper=True)
    engine = semantic_engine(OfflineEmbeddings(), threshold=0.6)
    writer = CachedRunnable(runnable=RunnableLambda(lambda _: before(name="Paris")),
                            cache=engine, model_id="cities", output_types=[before])  # fmt: skip
    writer.invoke("What is the capital of France?")
    near = writer.invoke("What is the capital city of France?")
    assert type(near) is before and engine.stats()["semantic_hits"] == 1
    calls = Calls(lambda: after(name="PARIS"))
    reader = CachedRunnable(runnable=RunnableLambda(calls), cache=engine, model_id="cities",
                            output_types=[after])  # fmt: skip
    assert reader.invoke("What is the capital city of France?") == after(name="PARIS")
    assert calls.count == 1 and engine.stats()["stale"] == 1


# -- streams ----------------------------------------------------------------------------------


def test_structured_streams_replay_their_chunks() -> None:
    cached = CachedRunnable(runnable=parser_chain(ANSWER_JSON), output_types=[Answer])
    live = list(cached.stream("q"))
    replay = list(cached.stream("q"))
    assert replay == live and live[-1] == ANSWER and type(replay[-1]) is Answer
    assert cached.invoke("q") == ANSWER  # invoke on a streamed entry: the last chunk

    async def json_stream() -> tuple[list[Any], list[Any]]:
        chain = FakeListChatModel(responses=['{"a": 1, "b": [2, 3]}']) | JsonOutputParser()
        cached = CachedRunnable(runnable=chain)
        live = [c async for c in cached.astream("q")]
        return live, [c async for c in cached.astream("q")]

    live_dicts, replayed = asyncio.run(json_stream())
    assert (
        len(live_dicts) > 1 and replayed == live_dicts and live_dicts[-1] == {"a": 1, "b": [2, 3]}
    )


def test_a_stream_of_an_invoke_stored_model_is_the_model() -> None:
    cached = CachedRunnable(runnable=parser_chain(ANSWER_JSON), output_types=[Answer])
    cached.invoke("q")
    assert list(cached.stream("q")) == [ANSWER]


# -- set_llm_cache: the model's message is cached, the schema parses it each time -------------


@pytest.fixture
def global_cache() -> Iterator[None]:
    yield
    set_llm_cache(None)


def test_llm_cache_entries_that_hold_no_generations_are_counted_misses() -> None:
    cache = OscarCache()
    for key, payload in (
        ("not-a-list", '"text"'),
        ("bad-object", '[{"lc": 1, "type": "constructor", "id": ["os", "system"]}]'),
    ):
        request = cache._request(key, "llm")
        cache.engine.backend.put(Record(request.exact_key(), payload), now=0.0)
        assert cache.lookup(key, "llm") is None
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["errors"]) == (0, 2, 2)


def test_llm_cache_prompts_that_look_like_entries_are_plain_prompts() -> None:
    cache = OscarCache()
    for ident in ([type_tag(Summary)], "malformed"):
        prompt = json.dumps([{"lc": 1, "type": OUTPUT_MARKER, "id": ident, "data": {}}])
        assert cache.lookup(prompt, "llm") is None
        cache.update(prompt, "llm", [Generation(text="ok")])
        assert cache.lookup(prompt, "llm") == [Generation(text="ok")]


def test_set_llm_cache_caches_the_tool_call_behind_structured_output(global_cache: None) -> None:
    cache = OscarCache()
    set_llm_cache(cache)
    structured = tool_chat("Summary", {"title": "t"}).with_structured_output(Summary)
    assert structured.invoke("q") == structured.invoke("q") == Summary(title="t")
    assert cache.stats()["hits"] == 1
