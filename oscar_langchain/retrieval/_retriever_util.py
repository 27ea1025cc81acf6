"""Helpers of the hybrid retriever: ids, metadata filters, argument plumbing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.runnables import RunnableConfig

from oscar_langchain.errors import ConfigurationError

__all__ = [
    "MetadataFilter",
    "config_flag",
    "configured",
    "matches",
    "prepare_documents",
    "stable_id",
    "to_documents",
]

MetadataFilter = Mapping[str, Any] | Callable[[Mapping[str, Any]], bool]
"""Equality on each key (a list/tuple/set value means "one of"), or a predicate."""


def stable_id(text: str, metadata: Mapping[str, Any]) -> str:
    """A deterministic id from a document's content and metadata."""
    blob = text + "\x00" + json.dumps(dict(metadata), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def prepare_documents(
    documents: Sequence[Document], ids: Sequence[str] | None
) -> tuple[list[str], list[Document]]:
    """Choose each document's id and copy it; of repeated ids the last document wins.

    The id comes from ``ids``, else ``Document.id``, else :func:`stable_id`.

    Raises:
        ValueError: when ``ids`` and ``documents`` differ in length.
    """
    if ids is not None and len(ids) != len(documents):
        raise ValueError(f"ids has {len(ids)} entries but documents has {len(documents)}")
    chosen = [
        (ids[i] if ids is not None else None) or d.id or stable_id(d.page_content, d.metadata)
        for i, d in enumerate(documents)
    ]
    keep = sorted({doc_id: i for i, doc_id in enumerate(chosen)}.values())
    docs = [
        Document(documents[i].page_content, metadata=dict(documents[i].metadata), id=chosen[i])
        for i in keep
    ]
    return [chosen[i] for i in keep], docs


def matches(metadata: Mapping[str, Any], wanted: MetadataFilter) -> bool:
    if callable(wanted):
        return bool(wanted(metadata))
    for key, value in wanted.items():
        have = metadata.get(key)
        if isinstance(value, (list, tuple, set, frozenset)):
            if have not in value:
                return False
        elif have != value:
            return False
    return True


def to_documents(
    texts: Sequence[str], metadatas: Sequence[Mapping[str, Any]] | None
) -> list[Document]:
    if metadatas is not None and len(metadatas) != len(texts):
        raise ValueError(f"metadatas has {len(metadatas)} entries but texts has {len(texts)}")
    return [
        Document(t, metadata=dict(metadatas[i]) if metadatas else {}) for i, t in enumerate(texts)
    ]


def configured(config: RunnableConfig | None) -> dict[str, Any]:
    if not config:
        return {}
    search_kwargs = (config.get("configurable") or {}).get("search_kwargs") or {}
    return dict(search_kwargs)


_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def config_flag(value: Any, field_name: str) -> bool:
    """A boolean given in a config: a bool, 0/1, or (case-insensitive) true/false, 1/0, yes/no.

    ``bool("false")`` is true, so a string is parsed, never cast.

    Raises:
        ConfigurationError: (a ``ValueError``) naming ``field_name`` for anything else.

    Example:
        >>> config_flag("False", "enabled"), config_flag(1, "enabled")
        (False, True)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _FLAGS:
        return _FLAGS[value.strip().lower()]
    raise ConfigurationError(field_name, f"expected true/false, 1/0 or yes/no, got {value!r}")
