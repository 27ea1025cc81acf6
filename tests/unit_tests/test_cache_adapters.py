from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from typing import Any

from langchain_core.language_models import FakeListChatModel
from langchain_core.load import dumps
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
)
from langchain_core.outputs import Generation
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from oscar_langchain import RouterRunnable
from oscar_langchain.cache import OscarCache
from oscar_langchain.cache.adapters import (
    message_turns,
    request_from_input,
    request_from_messages,
    serialised_turns,
)
from oscar_langchain.cache.codec import assemble_chunks, decode_value, to_chunk
from oscar_langchain.cache.identity import model_identity
from oscar_langchain.cache.langchain_cache import _turns
from oscar_langchain.routing import Route


def test_request_from_various_inputs() -> None:
    prompt = ChatPromptValue(messages=[HumanMessage("hi"), AIMessage("yo"), HumanMessage("q")])
    req = request_from_input(prompt, model="m")
    assert req.text == "q" and req.context == ("human: hi", "ai: yo")
    assert request_from_input([("human", "q")]).text == "q"
    assert request_from_input([1, 2]).text == "[1,2]"  # not messages: canonical JSON
    assert request_from_input({"a": 1}).text == '{"a":1}'
    multimodal = request_from_input([HumanMessage([{"type": "text", "text": "x"}])])
    assert multimodal.text == '[{"text":"x","type":"text"}]'
    assert model_identity(RunnableLambda(lambda x: x))[0].startswith("RunnableLambda:")


def test_identity_tells_bindings_and_chains_apart() -> None:
    model = FakeListChatModel(responses=["a"])
    name, params = model_identity(model.bind(stop=["x"]))
    assert name == "fake-list-chat-model" and params["stop"] == ["x"]
    first = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    second = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | model
    assert model_identity(first)[0] != model_identity(second)[0]
    assert model_identity(first) == model_identity(
        ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    )


def test_chunks() -> None:
    msg = AIMessage("", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "1"}])
    chunk = to_chunk(msg)
    assert isinstance(chunk, AIMessageChunk) and chunk.tool_call_chunks[0]["args"] == '{"a":1}'
    assert assemble_chunks([]) is None
    assert assemble_chunks([{"a": 1}, {"b": 2}]) == {"b": 2}  # dicts do not add: last wins
    assert assemble_chunks(["a", "b"]) == "ab"


def test_llm_cache_prompt_parsing_and_unserialisable_values() -> None:
    assert _turns("[not json") is None
    assert _turns(json.dumps([1, 2])) is None
    assert _turns(dumps([HumanMessage("q")])) == [(False, "human", "q", "")]
    cache = OscarCache()

    cache.update("p", "llm", [Generation(text="ok")])
    cache.update("p2", "llm", [object()])  # type: ignore[list-item]
    assert cache.lookup("p2", "llm") is None
    assert cache.stats()["errors"] >= 1


def test_serialised_prompts_are_read_like_revived_messages() -> None:
    conversation = [
        SystemMessage("Be brief."),
        HumanMessage([{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": "x"}]),
        AIMessage("", tool_calls=[{"name": "f", "args": {"a": 1}, "id": "1"}]),
        ToolMessage("42", tool_call_id="1"),
        FunctionMessage("out", name="f"),
        ChatMessage(role="critic", content="hmm"),
        SystemMessage("Also: cite sources."),
        HumanMessage("And now?"),
    ]
    data = json.loads(dumps(conversation))
    fast = serialised_turns(data)
    assert fast == message_turns(decode_value(data))
    assert _turns(dumps(conversation)) == fast
    req = request_from_messages(conversation, "m")
    assert (req.text, req.system) == ("And now?", "Be brief.\nAlso: cite sources.")
    # anything but plain messages is revived instead of read
    chunked = json.loads(dumps([SystemMessageChunk(content="s"), HumanMessage("q")]))
    assert serialised_turns(chunked) is None
    assert _turns(dumps([SystemMessageChunk(content="s"), HumanMessage("q")])) == [
        (True, "SystemMessageChunk", "s", ""), (False, "human", "q", "")]  # fmt: skip
    assert serialised_turns([{"lc": 1, "type": "constructor", "id": ["x"], "kwargs": {}}]) is None


def _agent(city: str, call_id: str = "call_1", last: Any = None) -> list[Any]:
    return [
        HumanMessage("What's the weather in my city?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": city}, "id": call_id}]),
        last if last is not None else ToolMessage("sunny, 21C", tool_call_id=call_id),
    ]


def test_tool_calls_ids_names_and_last_role_are_in_the_key() -> None:
    base = request_from_messages(_agent("Paris"), "m")
    variants = [
        _agent("London"),  # other tool-call arguments
        _agent("Paris", call_id="call_2"),  # other tool-call id (and the answer's id)
        _agent("Paris", last=ToolMessage("sunny, 21C", tool_call_id="call_9")),
        _agent("Paris", last=ToolMessage("sunny, 21C", tool_call_id="call_1", status="error")),
        _agent("Paris", last=HumanMessage("sunny, 21C")),  # the last message's role
        _agent("Paris", last=AIMessage("sunny, 21C")),
        _agent("Paris", last=ChatMessage(role="critic", content="sunny, 21C")),
        _agent("Paris", last=HumanMessage("sunny, 21C", name="bob")),
        [*_agent("Paris")[:1], AIMessage("", tool_calls=[
            {"name": "get_time", "args": {"city": "Paris"}, "id": "call_1"}]), _agent("Paris")[2]],
    ]  # fmt: skip
    keys = {request_from_messages(v, "m").exact_key() for v in variants}
    parts = {request_from_messages(v, "m").partition() for v in variants}
    assert len(keys) == len(parts) == len(variants) and base.exact_key() not in keys
    assert base.partition() not in parts  # a semantic hit needs the same tool fields too
    # a plain question keys like the bare string, as before
    assert (
        request_from_messages([HumanMessage("q")]).exact_key()
        == request_from_input("q").exact_key()
    )


def test_tool_fields_are_read_alike_from_serialised_and_revived_messages() -> None:
    conversation = [
        *_agent("Paris"),
        AIMessage("x", invalid_tool_calls=[{"name": "f", "args": "{", "id": "2", "error": "bad"}]),
        AIMessage("", additional_kwargs={"function_call": {"name": "f", "arguments": "{}"}}),
        HumanMessage("q", name="bob"),
    ]
    data = json.loads(dumps(conversation))
    assert serialised_turns(data) == message_turns(decode_value(data))
    assert [t.fields != "" for t in message_turns(conversation)] == [
        False, True, True, True, True, True]  # fmt: skip
    # tool calls given only in additional_kwargs (older dumps) are revived, then read
    legacy = {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"],
              "kwargs": {"content": "", "type": "ai", "additional_kwargs": {"tool_calls": [
                  {"id": "c", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}}}  # fmt: skip
    assert serialised_turns([legacy]) is None
    assert '"name":"g"' in (_turns(json.dumps([legacy])) or [])[0].fields


def test_llm_cache_tells_agent_conversations_apart() -> None:
    cache = OscarCache()
    cache.update(dumps(_agent("Paris")), "llm", [Generation(text="Paris is sunny")])
    assert cache.lookup(dumps(_agent("London")), "llm") is None
    assert cache.lookup(dumps(_agent("Paris")), "llm") == [Generation(text="Paris is sunny")]


_ROUTER_IDENTITY = """
from langchain_core.language_models import FakeListChatModel
from oscar_langchain import RouterRunnable
from oscar_langchain.cache.identity import model_identity
from oscar_langchain.routing import Route
route = Route(name="small", runnable=FakeListChatModel(responses=["a"]), context_window=8192)
print(model_identity(RouterRunnable(routes=[route]))[0])
"""


def test_router_identity_is_the_same_in_every_process() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run(
        [sys.executable, "-c", _ROUTER_IDENTITY], capture_output=True, text=True, env=env,
        check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    here: dict[str, Any] = {}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(_ROUTER_IDENTITY, here)  # the same script in this process
    assert child.startswith("RouterRunnable:") and child == out.getvalue().strip()


def test_router_identity_covers_its_routes_but_not_breaker_state() -> None:
    def router(answer: str) -> RouterRunnable:
        model = FakeListChatModel(responses=[answer])
        return RouterRunnable(routes=[Route(name="r", runnable=model, context_window=8192)])

    first = router("a")
    assert model_identity(first) == model_identity(router("a"))
    assert model_identity(first) != model_identity(router("b"))  # repr hides route runnables
    before = model_identity(first)
    assert first.breakers is not None
    first.breakers["r"].force_open()
    assert "state=forced_open" in repr(first) and model_identity(first) == before


def _render(x: str, state: str | None = None) -> str:
    return f"{x}/{state}"


def test_identity_strips_only_breaker_states_and_addresses() -> None:
    closed = "shut"
    with_state = RunnableLambda(lambda x: _render(x, state=closed))
    without = RunnableLambda(lambda x: _render(x))
    # Source that reads like a breaker state is the runnable's, not volatile.
    assert model_identity(with_state) != model_identity(without)
    at = RunnableLambda(lambda x: _render("meet at 0x10"))
    assert model_identity(at) != model_identity(RunnableLambda(lambda x: _render("meet")))


def test_breaker_state_is_stripped_whatever_the_route_name() -> None:
    def router(name: str) -> RouterRunnable:
        model = FakeListChatModel(responses=["a"])
        return RouterRunnable(routes=[Route(name=name, runnable=model, context_window=8192)])

    for name in ["it's", 'say "hi"', "a, state=open)"]:
        first = router(name)
        before = model_identity(first)
        assert first.breakers is not None
        first.breakers[name].force_open()
        assert model_identity(first) == before, name
        assert model_identity(router(name + "x")) != before
