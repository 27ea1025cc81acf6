"""Cached values as JSON: LangChain's serialisation, structured outputs, stream chunks.

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
    >>> from langchain_core.messages import AIMessage
    >>> decode_value(encode_value(AIMessage("hello"))).content
    'hello'
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.load import Serializable, dumpd, load
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessageChunk,
    message_chunk_to_message,
)
from pydantic import BaseModel

from oscar_langchain.cache.core import canonical_json
from oscar_langchain.cache.output_types import OutputTypes, UnserialisableValueError
from oscar_langchain.errors import CacheError

__all__ = [
    "OUTPUT_MARKER",
    "UnserialisableValueError",
    "assemble_chunks",
    "contains_unserialisable",
    "decode_value",
    "encode_value",
    "to_chunk",
]


def contains_unserialisable(data: Any) -> bool:
    """Whether ``dumpd`` output holds a ``not_implemented`` stand-in (an unserialisable object)."""
    if isinstance(data, Mapping):
        if data.get("lc") == 1 and data.get("type") == "not_implemented":
            return True
        return any(contains_unserialisable(v) for v in data.values())
    if isinstance(data, list):
        return any(contains_unserialisable(v) for v in data)
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
    if contains_unserialisable(data):
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
