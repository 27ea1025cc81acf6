"""Reading LangChain callback payloads: run names, models, token usage (duck-typed).

Pure helpers shared by the three handlers; nothing here imports LangChain. They only
look up a few keys, so the per-event cost stays a handful of dict lookups.

Example:
    >>> run_name({"name": "Retriever", "id": ["x", "Y"]}, {})
    'Retriever'
    >>> model_request({"ls_provider": "openai", "ls_model_name": "gpt-4o"}, {})
    ('gpt-4o', 'openai')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "LLMUsage",
    "ModelRequest",
    "attribute_value",
    "llm_usage",
    "model_request",
    "run_name",
]

AttributeValue = str | bool | int | float | list[str] | list[int] | list[float]


def run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> str:
    """The run's name: the ``name`` LangChain passes, else the serialized class name."""
    name = kwargs.get("name")
    if name:
        return str(name)
    if serialized:
        found = serialized.get("name")
        if found:
            return str(found)
        ids = serialized.get("id")
        if ids:
            return str(ids[-1])
    return "run"


def model_request(
    metadata: Mapping[str, Any] | None, kwargs: Mapping[str, Any]
) -> tuple[str | None, str | None]:
    """``(model, provider)`` asked for by a model run, from LangChain's ``ls_*`` metadata.

    Falls back to ``invocation_params`` (``model``/``model_name``/``_type``).
    """
    model = provider = None
    if metadata:
        model = metadata.get("ls_model_name")
        provider = metadata.get("ls_provider")
    if model is None or provider is None:
        params = kwargs.get("invocation_params") or {}
        model = model or params.get("model") or params.get("model_name")
        provider = provider or params.get("_type")
    return (str(model) if model else None, str(provider) if provider else None)


def request_params(
    metadata: Mapping[str, Any] | None, kwargs: Mapping[str, Any]
) -> tuple[float | None, int | None]:
    """``(temperature, max_tokens)`` of a model run, when known."""
    temperature = max_tokens = None
    if metadata:
        temperature = metadata.get("ls_temperature")
        max_tokens = metadata.get("ls_max_tokens")
    params = kwargs.get("invocation_params")
    if params:
        if temperature is None:
            temperature = params.get("temperature")
        if max_tokens is None:
            max_tokens = params.get("max_tokens") or params.get("max_completion_tokens")
    return (
        float(temperature) if isinstance(temperature, (int, float)) else None,
        int(max_tokens) if isinstance(max_tokens, int) else None,
    )


class ModelRequest:
    """A model run's start: chat or completion, its prompts and LangChain's extra fields."""

    __slots__ = ("chat", "kwargs", "prompts")

    def __init__(self, chat: bool, prompts: Any, kwargs: Mapping[str, Any]) -> None:
        self.chat = chat
        self.prompts = prompts
        self.kwargs = kwargs

    @property
    def metadata(self) -> Mapping[str, Any] | None:
        """The run's metadata (LangChain puts ``ls_*`` model parameters there)."""
        metadata: Mapping[str, Any] | None = self.kwargs.get("metadata")
        return metadata

    def model(self) -> tuple[str | None, str | None]:
        """``(model, provider)`` asked for."""
        return model_request(self.metadata, self.kwargs)

    def params(self) -> tuple[float | None, int | None]:
        """``(temperature, max_tokens)`` asked for."""
        return request_params(self.metadata, self.kwargs)


class LLMUsage:
    """What a model run's result says: response model, finish reasons, token counts."""

    __slots__ = ("finish_reasons", "input_tokens", "output_tokens", "response_model", "texts")

    def __init__(self) -> None:
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.texts: list[str] = []


def _add(current: int | None, value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return (current or 0) + value
    return current


def llm_usage(response: Any) -> LLMUsage:
    """Read an ``LLMResult``: usage from messages' ``usage_metadata`` or ``llm_output``."""
    usage = LLMUsage()
    llm_output = getattr(response, "llm_output", None) or {}
    for batch in getattr(response, "generations", None) or ():
        for gen in batch:
            info = getattr(gen, "generation_info", None) or {}
            message = getattr(gen, "message", None)
            meta = getattr(message, "response_metadata", None) or {}
            reason = info.get("finish_reason") or meta.get("finish_reason")
            reason = reason or meta.get("stop_reason") or meta.get("done_reason")
            if reason:
                usage.finish_reasons.append(str(reason))
            usage.response_model = usage.response_model or meta.get("model_name")
            usage.response_model = usage.response_model or meta.get("model")
            counts = getattr(message, "usage_metadata", None)
            if counts:
                usage.input_tokens = _add(usage.input_tokens, counts.get("input_tokens"))
                usage.output_tokens = _add(usage.output_tokens, counts.get("output_tokens"))
            text = getattr(gen, "text", None)
            if text:
                usage.texts.append(str(text))
    usage.response_model = usage.response_model or llm_output.get("model_name")
    if usage.input_tokens is None and usage.output_tokens is None:
        token_usage = llm_output.get("token_usage") or llm_output.get("usage") or {}
        usage.input_tokens = _add(None, token_usage.get("prompt_tokens"))
        usage.input_tokens = _add(usage.input_tokens, token_usage.get("input_tokens"))
        usage.output_tokens = _add(None, token_usage.get("completion_tokens"))
        usage.output_tokens = _add(usage.output_tokens, token_usage.get("output_tokens"))
    if usage.response_model is not None:
        usage.response_model = str(usage.response_model)
    return usage


def attribute_value(value: Any) -> AttributeValue:
    """``value`` as an OpenTelemetry attribute value (scalars kept, the rest as text)."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return [str(v) for v in value]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [int(v) for v in value]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [float(v) for v in value]
    return str(value)
