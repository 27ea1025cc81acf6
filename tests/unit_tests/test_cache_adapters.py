from __future__ import annotations

import json

from langchain_core.language_models import FakeListChatModel
from langchain_core.load import dumps
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.outputs import Generation
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from oscar_langchain.cache import OscarCache
from oscar_langchain.cache.adapters import (
    assemble_chunks,
    model_identity,
    request_from_input,
    to_chunk,
)
from oscar_langchain.cache.langchain_cache import _messages


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
    assert _messages("[not json") is None
    assert _messages(json.dumps([1, 2])) is None
    assert _messages(dumps([HumanMessage("q")]))[0].content == "q"  # type: ignore[index]
    cache = OscarCache()

    cache.update("p", "llm", [Generation(text="ok")])
    cache.update("p2", "llm", [object()])  # type: ignore[list-item]
    assert cache.lookup("p2", "llm") is None
    assert cache.stats()["errors"] >= 1
