"""What a cached runnable's identity holds: its model, its sampling and its schemas.

A cache key names the model or chain that answers (:func:`model_identity`, stable across
processes: object addresses and breaker states are stripped), whether it may sample
(:func:`sampling_temperature`, so sampled calls are not cached) and the structured-output
schemas it requests (:func:`output_schemas`, so two schemas never share entries).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from langchain_core.language_models import BaseLanguageModel
from langchain_core.load import dumpd
from langchain_core.output_parsers import BaseOutputParser, PydanticToolsParser
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.base import RunnableBindingBase
from langchain_core.runnables.config import merge_configs
from langchain_core.runnables.configurable import DynamicRunnable
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel, PydanticUserError

from oscar_langchain.cache.codec import contains_unserialisable
from oscar_langchain.cache.core import canonical_json

__all__ = [
    "SamplingTemperature",
    "model_identity",
    "output_schemas",
    "sampling_temperature",
]


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
    if not isinstance(data, Mapping) or contains_unserialisable(data):
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
