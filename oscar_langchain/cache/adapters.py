"""LangChain-side helpers: turn inputs into cache requests and values into JSON.

Values are stored with LangChain's JSON serialisation (``dumpd``) and revived with
``load(..., allowed_objects="core")``, so only langchain-core classes (messages,
generations, documents...) can come back: no pickle, no arbitrary imports. Plain JSON
data (the dicts of ``JsonOutputParser`` or of ``with_structured_output`` on a JSON
schema or a ``TypedDict``) round-trips as it is; a user dict with an ``"lc"`` key is
escaped by ``dumpd`` and comes back a dict, never an object. Pydantic models (structured
outputs) are stored only for the classes of an
:class:`~oscar_langchain.cache.output_types.OutputTypes` registry, as a tagged
``{"lc": 1, "type": "oscar_output", ...}`` entry that user data cannot forge (``dumpd``
escapes every user dict with an ``"lc"`` key), in lists and dicts too
(``include_raw=True``).

Example:
    >>> from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    >>> req = request_from_input([SystemMessage("Be brief."), HumanMessage("Hi!")], model="m")
    >>> req.text, req.system, req.context
    ('Hi!', 'Be brief.', ())
    >>> decode_value(encode_value(AIMessage("hello"))).content
    'hello'
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from langchain_core.language_models import BaseLanguageModel
from langchain_core.load import Serializable, dumpd, load
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    SystemMessage,
    convert_to_messages,
    message_chunk_to_message,
)
from langchain_core.output_parsers import BaseOutputParser, PydanticToolsParser
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.base import RunnableBindingBase
from langchain_core.runnables.config import merge_configs
from langchain_core.runnables.configurable import DynamicRunnable
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel, PydanticUserError

from oscar_langchain.cache.core import CacheRequest, canonical_json
from oscar_langchain.cache.output_types import OutputTypes, UnserialisableValueError
from oscar_langchain.errors import CacheError

__all__ = [
    "ANSWER_FIELDS",
    "NON_ANSWER_CONFIGURABLE",
    "OUTPUT_MARKER",
    "SamplingTemperature",
    "Turn",
    "UnserialisableValueError",
    "assemble_chunks",
    "configurable_params",
    "decode_value",
    "encode_value",
    "message_turns",
    "model_identity",
    "output_schemas",
    "request_from_input",
    "request_from_messages",
    "request_from_turns",
    "sampling_temperature",
    "serialised_turns",
    "to_chunk",
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


_VOLATILE = (
    # <function f at 0x7f...>, <object object at 0x...>: the address differs per process.
    (re.compile(r" at 0x[0-9a-fA-F]+(?=>)"), ""),
    # CircuitBreaker('name', state=open) -> CircuitBreaker('name'): the live state. Only
    # a breaker's repr is matched, so source or text that reads ", state=open)" is kept.
    (
        re.compile(
            r"""(CircuitBreaker\((?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")), """
            r"""state=(?:closed|open|half_open|forced_open)\)"""
        ),
        r"\1)",
    ),
)


def _stable(text: str) -> str:
    """``text`` without memory addresses and live breaker states (same in every process)."""
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def _stable_data(data: Any) -> Any:
    """``data`` (a repr, or dumpd's output) with :func:`_stable` applied to each string.

    Applied before JSON encoding, so the patterns see the reprs as Python wrote them.
    """
    if isinstance(data, str):
        return _stable(data)
    if isinstance(data, Mapping):
        return {k: _stable_data(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_stable_data(v) for v in data]
    return data


def _runnables_in(value: Any, depth: int = 2) -> list[Runnable[Any, Any]]:
    """Runnables held by a field value, directly or in lists, dicts and dataclasses."""
    if isinstance(value, Runnable):
        return [value]
    if depth == 0:
        return []
    if isinstance(value, Mapping):
        items: list[Any] = list(value.values())
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [getattr(value, f.name) for f in dataclasses.fields(value)]
    else:
        return []
    return [r for item in items for r in _runnables_in(item, depth - 1)]


def model_identity(runnable: Runnable[Any, Any]) -> tuple[str, dict[str, Any]]:
    """``(identity, parameters)`` of a runnable, for cache keys.

    A language model gives its type and invocation parameters (``temperature`` included);
    a binding (``model.bind(stop=...)``) adds its bound arguments; any other runnable
    (a chain, a retriever, a lambda) is fingerprinted by a hash of its JSON
    serialisation, so two different chains never share keys. A runnable with no JSON
    form (a router, a failover chain) is fingerprinted by its ``repr`` without memory
    addresses or breaker states, plus the identities of the runnables its fields hold
    (a router's routes), so the identity is the same in every process and a persistent
    cache hits after a restart. Functions in such a repr are known by name only (two
    closures of one factory look alike): give ``model_id`` to tell them apart.
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
        data: Any = dumpd(runnable)
    except (TypeError, ValueError):
        data = repr(runnable)
    parts = [canonical_json(_stable_data(data))]
    if not isinstance(data, Mapping) or _contains_unserialisable(data):
        fields = getattr(type(runnable), "model_fields", {})
        children = [r for name in fields for r in _runnables_in(getattr(runnable, name, None))]
        parts.extend(canonical_json(model_identity(child)) for child in children)
    digest = hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]
    return f"{type(runnable).__qualname__}:{runnable.get_name()}:{digest}", {}


class SamplingTemperature(NamedTuple):
    """What :func:`sampling_temperature` found.

    Attributes:
        temperature: the highest temperature of the language models reached (``None``:
            none gives one).
        per_call: whether a configurable runnable was resolved with the call's config on
            the way (the answer can then differ from call to call).
    """

    temperature: float | None
    per_call: bool


def sampling_temperature(
    runnable: Runnable[Any, Any], config: RunnableConfig | None = None
) -> SamplingTemperature:
    """The highest temperature of the language models ``runnable`` may call.

    The walk goes through bindings (a bound ``temperature`` overrides the model's),
    ``with_config``/``with_retry``, sequences, parallels, fallbacks, and the runnables
    held by other runnables' fields (a router's routes, a failover's candidates);
    configurable runnables (``configurable_fields``, ``configurable_alternatives``) are
    resolved with ``config``, as they are when called. A runnable that can call a
    sampling model samples, even if that model is only a fallback. Models called
    inside a function (``RunnableLambda``) cannot be seen.

    Example:
        >>> from langchain_core.language_models import FakeListChatModel
        >>> from langchain_core.output_parsers import StrOutputParser
        >>> model = FakeListChatModel(responses=["a"])
        >>> sampling_temperature(model.bind(temperature=0.7) | StrOutputParser())
        SamplingTemperature(temperature=0.7, per_call=False)
    """
    found: list[float] = []
    per_call = _walk_temperatures(runnable, config, found, set())
    return SamplingTemperature(max(found) if found else None, per_call)


def _walk_temperatures(
    runnable: Runnable[Any, Any], config: RunnableConfig | None, found: list[float], seen: set[int]
) -> bool:
    """Append the temperatures of the models under ``runnable`` to ``found``; per-call?"""
    if id(runnable) in seen:
        return False
    seen.add(id(runnable))
    if isinstance(runnable, DynamicRunnable):
        resolved, resolved_config = runnable.prepare(config)
        _walk_temperatures(resolved, resolved_config, found, seen)
        return True
    if isinstance(runnable, RunnableBindingBase):
        bound_temperature = runnable.kwargs.get("temperature")
        if isinstance(bound_temperature, (int, float)):
            found.append(float(bound_temperature))
            if isinstance(runnable.bound, BaseLanguageModel):
                return False  # the bound argument overrides the model's own
        merged = merge_configs(runnable.config, config) if runnable.config else config
        return _walk_temperatures(runnable.bound, merged, found, seen)
    if isinstance(runnable, BaseLanguageModel):
        temperature = model_identity(runnable)[1].get("temperature")
        if isinstance(temperature, (int, float)):
            found.append(float(temperature))
        return False
    fields = getattr(type(runnable), "model_fields", {})
    children = [r for name in fields for r in _runnables_in(getattr(runnable, name, None))]
    per_call = [_walk_temperatures(child, config, found, seen) for child in children]
    return any(per_call)


def _contains_unserialisable(data: Any) -> bool:
    if isinstance(data, Mapping):
        if data.get("lc") == 1 and data.get("type") == "not_implemented":
            return True
        return any(_contains_unserialisable(v) for v in data.values())
    if isinstance(data, list):
        return any(_contains_unserialisable(v) for v in data)
    return False


OUTPUT_MARKER = "oscar_output"
"""The ``type`` of a stored structured output: ``{"lc": 1, "type": OUTPUT_MARKER,
"id": [tag], "data": ...}``."""
_ESCAPED = "__lc_escaped__"  # dumpd's wrapper of a user dict that has an "lc" key
_NO_TYPES = OutputTypes()


def _plain_dict(value: Any) -> bool:
    """A dict :func:`encode_value` walks into: string keys, nothing ``dumpd`` escapes."""
    return (
        isinstance(value, dict)
        and all(isinstance(k, str) for k in value)
        and "lc" not in value
        and _ESCAPED not in value
    )


def encode_value(value: Any, output_types: OutputTypes | None = None) -> Any:
    """JSON-able form of ``value``; raises :class:`UnserialisableValueError` if none.

    LangChain objects and other values go through ``dumpd``; pydantic models of
    ``output_types``, also inside lists and dicts, become tagged entries (see the module
    docstring). Any other pydantic model has no safe JSON form.
    """
    if isinstance(value, BaseModel) and not isinstance(value, Serializable):
        tag, data = (output_types or _NO_TYPES).dump(value)
        return {"lc": 1, "type": OUTPUT_MARKER, "id": [tag], "data": data}
    if _plain_dict(value):
        return {k: encode_value(v, output_types) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v, output_types) for v in value]
    data = dumpd(value)
    if _contains_unserialisable(data):
        raise UnserialisableValueError(f"{type(value).__name__} has no safe JSON form")
    return data


def _revive_outputs(data: Any, output_types: OutputTypes) -> Any:
    """``data`` with its tagged entries revived: the parts :func:`encode_value` walked."""
    if isinstance(data, list):
        return [_revive_outputs(v, output_types) for v in data]
    if not isinstance(data, dict) or (len(data) == 1 and _ESCAPED in data):
        return data
    if "lc" not in data:
        return {k: _revive_outputs(v, output_types) for k, v in data.items()}
    if data.get("lc") != 1 or data.get("type") != OUTPUT_MARKER:
        return data  # a LangChain object: load() revives it
    ident = data.get("id")
    if not (isinstance(ident, list) and len(ident) == 1 and isinstance(ident[0], str)):
        raise CacheError(f"structured output entry with a malformed id {ident!r}")
    return output_types.load(ident[0], data.get("data"))


def decode_value(data: Any, output_types: OutputTypes | None = None) -> Any:
    """Revive a value stored by :func:`encode_value` (langchain-core classes only).

    Structured outputs revive only as classes of ``output_types``.

    Raises:
        StaleEntryError: a structured output whose class is not in ``output_types``, or
            that no longer validates.
        CacheError: a malformed structured output entry.
        ValueError: (and ``TypeError``, ``KeyError``, ``NotImplementedError``) from
            ``load``, for data it cannot revive.
    """
    data = _revive_outputs(data, output_types or _NO_TYPES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(data, allowed_objects="core")


def _schema_json(schema: Any) -> Any:
    """A structured output schema (pydantic class, TypedDict, JSON schema) as JSON."""
    if isinstance(schema, Mapping):
        return _stable_data(dict(schema))
    try:
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return schema.model_json_schema()
        return convert_to_json_schema(schema)
    except (PydanticUserError, TypeError, ValueError, NotImplementedError):
        # No JSON schema (arbitrary types): keyed by name, so at worst a miss.
        return {"unconverted": _stable(repr(schema))}


def output_schemas(runnable: Runnable[Any, Any]) -> list[Any]:
    """The JSON schemas of the structured outputs ``runnable`` produces, for cache keys.

    Found in ``with_structured_output`` bindings (any method, any schema kind), in
    output parsers' ``pydantic_object`` (``PydanticOutputParser``,
    ``JsonOutputParser``...) and in ``PydanticToolsParser`` tools, through sequences,
    bindings, fallbacks and the runnables other runnables' fields hold. Outputs built
    inside a function (``RunnableLambda``) cannot be seen; register their classes in
    ``output_types``, whose schemas join the key too.

    Example:
        >>> from langchain_core.output_parsers import PydanticOutputParser
        >>> from pydantic import BaseModel, PydanticUserError
        >>> class City(BaseModel):
        ...     name: str
        >>> output_schemas(PydanticOutputParser(pydantic_object=City))[0]["title"]
        'City'
    """
    found: list[Any] = []
    _walk_schemas(runnable, found, set())
    return found


def _walk_schemas(runnable: Runnable[Any, Any], found: list[Any], seen: set[int]) -> None:
    if id(runnable) in seen:
        return
    seen.add(id(runnable))
    if isinstance(runnable, RunnableBindingBase):
        requested = runnable.kwargs.get("ls_structured_output_format")
        if isinstance(requested, Mapping) and requested.get("schema") is not None:
            found.append(_schema_json(requested["schema"]))
    if isinstance(runnable, BaseOutputParser):
        target = getattr(runnable, "pydantic_object", None)
        if isinstance(target, type):
            found.append(_schema_json(target))
        if isinstance(runnable, PydanticToolsParser):
            found.extend(_schema_json(tool) for tool in runnable.tools)
    fields = getattr(type(runnable), "model_fields", {})
    for name in fields:
        for child in _runnables_in(getattr(runnable, name, None)):
            _walk_schemas(child, found, seen)


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
