"""LangChain-side helpers: turn inputs into cache requests and values into JSON.

Values are stored with LangChain's JSON serialisation (``dumpd``) and revived with
``load(..., allowed_objects="core")``, so only langchain-core classes (messages,
generations, documents...) can come back: no pickle, no arbitrary imports.

Example:
    >>> from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    >>> req = request_from_input([SystemMessage("Be brief."), HumanMessage("Hi!")], model="m")
    >>> req.text, req.system, req.context
    ('Hi!', 'Be brief.', ())
    >>> decode_value(encode_value(AIMessage("hello"))).content
    'hello'
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseLanguageModel
from langchain_core.load import dumpd, load
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    SystemMessage,
    convert_to_messages,
    message_chunk_to_message,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableBinding

from oscar_langchain.cache.core import CacheRequest, canonical_json

__all__ = [
    "Turn",
    "UnserialisableValueError",
    "assemble_chunks",
    "decode_value",
    "encode_value",
    "message_turns",
    "model_identity",
    "request_from_input",
    "request_from_messages",
    "request_from_turns",
    "serialised_turns",
    "to_chunk",
]


class UnserialisableValueError(TypeError):
    """A value has no safe JSON form, so it is not cached."""


def _content(message: BaseMessage) -> str:
    content = message.content
    return content if isinstance(content, str) else canonical_json(content)


Turn = tuple[bool, str, str]
"""One message as a cache key sees it: (is a system message, message type, content text)."""


def request_from_turns(
    turns: Sequence[Turn],
    model: str = "",
    params: Mapping[str, Any] | None = None,
    namespace: str = "default",
) -> CacheRequest:
    """The last non-system turn is the text; system turns and earlier turns are the context."""
    system = "\n".join(content for is_system, _, content in turns if is_system)
    rest = [(kind, content) for is_system, kind, content in turns if not is_system]
    return CacheRequest(
        text=rest[-1][1] if rest else "",
        model=model,
        params=dict(params or {}),
        system=system,
        context=tuple(f"{kind}: {content}" for kind, content in rest[:-1]),
        namespace=namespace,
    )


def request_from_messages(
    messages: Sequence[BaseMessage],
    model: str = "",
    params: Mapping[str, Any] | None = None,
    namespace: str = "default",
) -> CacheRequest:
    """The last message is the text; system messages and earlier turns are the context."""
    return request_from_turns(message_turns(messages), model, params, namespace)


def message_turns(messages: Sequence[BaseMessage]) -> list[Turn]:
    """The :data:`Turn` s of revived messages."""
    return [(isinstance(m, SystemMessage), m.type, _content(m)) for m in messages]


_PLAIN_MESSAGES = {
    "SystemMessage": True,
    "HumanMessage": False,
    "AIMessage": False,
    "ToolMessage": False,
    "FunctionMessage": False,
    "ChatMessage": False,
}


def serialised_turns(data: Any) -> list[Turn] | None:
    """Turns of a message list serialised by LangChain's ``dumps``, read without reviving.

    Only plain message classes are read this way (``None`` otherwise, e.g. for chunks):
    their type and content are all a key uses, and reviving each message costs far more
    than the lookup itself.
    """
    if not isinstance(data, list) or not data:
        return None
    turns: list[Turn] = []
    for item in data:
        if not isinstance(item, dict) or item.get("lc") != 1 or item.get("type") != "constructor":
            return None
        ident, kwargs = item.get("id"), item.get("kwargs")
        if not isinstance(ident, list) or ident[:3] != ["langchain", "schema", "messages"]:
            return None
        if len(ident) != 4 or ident[3] not in _PLAIN_MESSAGES or not isinstance(kwargs, dict):
            return None
        content, kind = kwargs.get("content"), kwargs.get("type")
        if not isinstance(kind, str) or not isinstance(content, (str, list)):
            return None
        text = content if isinstance(content, str) else canonical_json(content)
        turns.append((_PLAIN_MESSAGES[ident[3]], kind, text))
    return turns


def request_from_input(
    value: Any,
    model: str = "",
    params: Mapping[str, Any] | None = None,
    namespace: str = "default",
) -> CacheRequest:
    """A :class:`CacheRequest` for any Runnable input.

    Strings are the text; prompt values and message lists go through
    :func:`request_from_messages`; a dict with one string field uses it as the text and
    the other fields as context; anything else is keyed by its canonical JSON.
    """
    if isinstance(value, PromptValue):
        value = value.to_messages()
    if isinstance(value, str):
        return CacheRequest(value, model, dict(params or {}), namespace=namespace)
    if isinstance(value, (list, tuple)) and value:
        try:
            messages = convert_to_messages(value)
        except (ValueError, TypeError, NotImplementedError):
            messages = None
        if messages is not None:
            return request_from_messages(messages, model, params, namespace)
    if isinstance(value, Mapping):
        texts = [k for k, v in value.items() if isinstance(v, str)]
        if len(texts) == 1:
            rest = {k: v for k, v in value.items() if k != texts[0]}
            return CacheRequest(
                value[texts[0]],
                model,
                dict(params or {}),
                context=(canonical_json({"field": texts[0], "others": rest}),),
                namespace=namespace,
            )
    return CacheRequest(canonical_json(value), model, dict(params or {}), namespace=namespace)


def model_identity(runnable: Runnable[Any, Any]) -> tuple[str, dict[str, Any]]:
    """``(identity, parameters)`` of a runnable, for cache keys.

    A language model gives its type and invocation parameters (``temperature`` included);
    a binding (``model.bind(stop=...)``) adds its bound arguments; any other runnable
    (a chain, a retriever, a lambda) is fingerprinted by a hash of its JSON
    serialisation, so two different chains never share keys.
    """
    if isinstance(runnable, RunnableBinding):
        name, bound_params = model_identity(runnable.bound)
        return name, {**bound_params, **runnable.kwargs}
    if isinstance(runnable, BaseLanguageModel):
        getter = getattr(runnable, "_get_invocation_params", None)
        params: dict[str, Any] = dict(getter()) if callable(getter) else {}
        temperature = getattr(runnable, "temperature", None)
        if "temperature" not in params and isinstance(temperature, (int, float)):
            params["temperature"] = temperature
        return str(getattr(runnable, "_llm_type", type(runnable).__name__)), params
    try:
        fingerprint = canonical_json(dumpd(runnable))
    except (TypeError, ValueError):
        fingerprint = repr(runnable)
    digest = hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:16]
    return f"{type(runnable).__qualname__}:{runnable.get_name()}:{digest}", {}


def _contains_unserialisable(data: Any) -> bool:
    if isinstance(data, Mapping):
        if data.get("lc") == 1 and data.get("type") == "not_implemented":
            return True
        return any(_contains_unserialisable(v) for v in data.values())
    if isinstance(data, list):
        return any(_contains_unserialisable(v) for v in data)
    return False


def encode_value(value: Any) -> Any:
    """JSON-able form of ``value``; raises :class:`UnserialisableValueError` if none."""
    data = dumpd(value)
    if _contains_unserialisable(data):
        raise UnserialisableValueError(f"{type(value).__name__} has no safe JSON form")
    return data


def decode_value(data: Any) -> Any:
    """Revive a value stored by :func:`encode_value` (langchain-core classes only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(data, allowed_objects="core")


def to_chunk(value: Any) -> Any:
    """A cached whole value as a stream chunk (an ``AIMessage`` becomes a chunk)."""
    if isinstance(value, AIMessage) and not isinstance(value, BaseMessageChunk):
        return AIMessageChunk(
            content=value.content,
            additional_kwargs=value.additional_kwargs,
            response_metadata=value.response_metadata,
            usage_metadata=value.usage_metadata,
            id=value.id,
            tool_call_chunks=[
                {"name": tc["name"], "args": canonical_json(tc["args"]), "id": tc["id"], "index": i}
                for i, tc in enumerate(value.tool_calls)
            ],
        )
    return value


def assemble_chunks(chunks: Sequence[Any]) -> Any:
    """The whole value of a stream: chunks added up, message chunks made messages."""
    if not chunks:
        return None
    total = chunks[0]
    for chunk in chunks[1:]:
        try:
            total = total + chunk
        except TypeError:
            total = chunk  # chunks that do not add up: the last one is the value
    if isinstance(total, BaseMessageChunk):
        return message_chunk_to_message(total)
    return total
