"""LangChain inputs as cache requests: messages, prompt values and strings into turns.

Example:
    >>> from langchain_core.messages import HumanMessage, SystemMessage
    >>> req = request_from_input([SystemMessage("Be brief."), HumanMessage("Hi!")], model="m")
    >>> req.text, req.system, req.context
    ('Hi!', 'Be brief.', ())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from langchain_core.messages import (
    BaseMessage,
    SystemMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue

from oscar_langchain.cache.core import CacheRequest, canonical_json

__all__ = [
    "ANSWER_FIELDS",
    "NON_ANSWER_CONFIGURABLE",
    "Turn",
    "configurable_params",
    "message_turns",
    "request_from_input",
    "request_from_messages",
    "request_from_turns",
    "serialised_turns",
]


def _content(message: BaseMessage) -> str:
    content = message.content
    return content if isinstance(content, str) else canonical_json(content)


class Turn(NamedTuple):
    """One message as a cache key sees it.

    Attributes:
        system: whether it is a system message.
        kind: the message type (``"human"``, ``"ai"``, ``"tool"``...).
        content: the content text (canonical JSON for content blocks).
        fields: the other fields that can change the answer, as canonical JSON, or ``""``
            when the message has none (see :data:`ANSWER_FIELDS`).
    """

    system: bool
    kind: str
    content: str
    fields: str = ""


ANSWER_FIELDS = (
    "name",
    "role",
    "tool_calls",
    "invalid_tool_calls",
    "tool_call_id",
    "status",
    "function_call",
)
"""Message fields besides type and content that a key includes: the tool calls an AI
message made (name, arguments, id), the tool call a tool message answers and its status,
a chat message's role, a participant name and a legacy ``function_call``. Ids, metadata,
usage and artifacts never reach the model and are left out."""

_READ = (*(f for f in ANSWER_FIELDS if f != "function_call"), "additional_kwargs")
"""Fields read from a serialised message (``function_call`` is in ``additional_kwargs``)."""


def _answer_fields(data: Mapping[str, Any]) -> str | None:
    """Canonical JSON of a message's answer-changing fields (``""``: none).

    ``data`` maps field names to values (absent: the default); ``None`` means a field
    has an unexpected shape, so the caller should revive the message instead.
    """
    found: dict[str, Any] = {}
    for name in ("name", "role", "tool_call_id"):
        value = data.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            return None
        found[name] = value
    if data.get("status") not in (None, "success"):
        found["status"] = data["status"]
    for name, keep in (("tool_calls", ("name", "args", "id")),
                       ("invalid_tool_calls", ("name", "args", "id", "error"))):  # fmt: skip
        calls = data.get(name)
        if not calls:
            continue
        if not isinstance(calls, list) or not all(isinstance(c, Mapping) for c in calls):
            return None
        found[name] = [{k: c.get(k) for k in keep} for c in calls]
    extra = data.get("additional_kwargs")
    if isinstance(extra, Mapping) and extra.get("function_call") is not None:
        found["function_call"] = extra["function_call"]
    return canonical_json(found) if found else ""


def _message_fields(message: BaseMessage) -> str:
    fields = _answer_fields({n: getattr(message, n) for n in _READ if hasattr(message, n)})
    return canonical_json({"unreadable": repr(message)}) if fields is None else fields


def _render(kind: str, content: str, fields: str) -> str:
    """A turn as one context string: ``"kind: content"``, fields (JSON) after the kind."""
    return f"{kind}{fields}: {content}"


def request_from_turns(
    turns: Sequence[Turn],
    model: str = "",
    params: Mapping[str, Any] | None = None,
    namespace: str = "default",
) -> CacheRequest:
    """The last non-system turn is the text; system turns and earlier turns are the context.

    The last turn's type and fields are the request's ``turn`` (left empty for a plain
    human message, so a one-message conversation keys like the bare string).
    """
    system = "\n".join(
        _render("system", t.content, t.fields) if t.fields else t.content for t in turns if t.system
    )
    rest = [t for t in turns if not t.system]
    last = rest[-1] if rest else None
    turn = ""
    if last is not None and (last.kind != "human" or last.fields):
        turn = f"{last.kind}{last.fields}"
    return CacheRequest(
        text=last.content if last is not None else "",
        model=model,
        params=dict(params or {}),
        system=system,
        context=tuple(_render(t.kind, t.content, t.fields) for t in rest[:-1]),
        namespace=namespace,
        turn=turn,
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
    """The :class:`Turn` s of revived messages."""
    return [
        Turn(isinstance(m, SystemMessage), m.type, _content(m), _message_fields(m))
        for m in messages
    ]


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

    Only plain message classes are read this way (``None`` otherwise, e.g. for chunks, or
    for an AI message whose tool calls are only in ``additional_kwargs``): reviving each
    message costs far more than the lookup itself. The turns equal
    :func:`message_turns` of the revived messages.
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
        extra = kwargs.get("additional_kwargs")
        if isinstance(extra, Mapping) and "tool_calls" in extra and "tool_calls" not in kwargs:
            return None  # reviving parses these into tool_calls
        fields = _answer_fields(kwargs)
        if fields is None:
            return None
        text = content if isinstance(content, str) else canonical_json(content)
        turns.append(Turn(_PLAIN_MESSAGES[ident[3]], kind, text, fields))
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


NON_ANSWER_CONFIGURABLE = frozenset(
    {
        "thread_id",
        "checkpoint_id",
        "checkpoint_ns",
        "checkpoint_map",
        "checkpoint_during",
        "run_id",
        "task_id",
        "langgraph_request_id",
        "x-request-id",
    }
)
"""``config["configurable"]`` keys left out of keys: sessions, checkpoints and run ids
(LangGraph's among them). Keys starting with ``__`` (framework internals such as
``__pregel_send``) are left out too. Every other key is kept: an unfamiliar one can only
cause a miss, never a wrong hit."""


def configurable_params(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The cache-key parameters of a call's config: ``{"configurable": {...}}`` or ``{}``.

    ``configurable_alternatives`` and ``configurable_fields`` pick another model or other
    field values per call, so the values that can change the answer go into the key.
    """
    configurable = (config or {}).get("configurable") or {}
    kept = {
        k: v
        for k, v in configurable.items()
        if k not in NON_ANSWER_CONFIGURABLE and not str(k).startswith("__")
    }
    return {"configurable": kept} if kept else {}
