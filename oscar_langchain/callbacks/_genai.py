"""OpenTelemetry GenAI semantic conventions: attribute names, metrics, content capture.

Attribute and metric names follow the GenAI semantic conventions
(https://opentelemetry.io/docs/specs/semconv/gen-ai/). Recorded content always goes
through :func:`~oscar_langchain.callbacks._redact.redact`.

Example:
    >>> content_text([[{"role": "user", "content": "key sk-abcdefghijklmnopqrstuvwx"}]], 200)
    '[[{"role": "user", "content": "key [REDACTED]"}]]'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from opentelemetry.metrics import MeterProvider

from oscar_langchain.callbacks._redact import is_secret_key, redact, truncate
from oscar_langchain.callbacks._runs import AttributeValue, attribute_value

__all__ = ["GenAIMetrics", "content_text", "message_dicts", "safe_attributes"]

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOOL_NAME = "gen_ai.tool.name"
ERROR_TYPE = "error.type"
RUN_TYPE = "oscar.run.type"
TTFT = "oscar.time_to_first_token"
INPUT = "oscar.input"
OUTPUT = "oscar.output"

_DURATION_BUCKETS = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
]  # fmt: skip
_TOKEN_BUCKETS = [
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
]  # fmt: skip


class GenAIMetrics:
    """The GenAI client metrics: operation duration and token usage histograms."""

    def __init__(self, meter_provider: MeterProvider) -> None:
        meter = meter_provider.get_meter("oscar_langchain")
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )

    def record(
        self,
        attributes: dict[str, AttributeValue],
        duration: float,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        """Record one operation (and its token usage, when known)."""
        self.duration.record(duration, attributes)
        if input_tokens is not None:
            self.tokens.record(input_tokens, {**attributes, "gen_ai.token.type": "input"})
        if output_tokens is not None:
            self.tokens.record(output_tokens, {**attributes, "gen_ai.token.type": "output"})


def message_dicts(messages: Any) -> Any:
    """Chat messages (LangChain ``BaseMessage``-like) as ``{"role", "content"}`` dicts."""
    if isinstance(messages, (list, tuple)):
        return [message_dicts(m) for m in messages]
    role = getattr(messages, "type", None)
    if role is not None and hasattr(messages, "content"):
        return {"role": str(role), "content": messages.content}
    return messages


def content_text(value: Any, limit: int) -> str:
    """``value`` as redacted, truncated text (JSON when it serialises)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            text = str(value)
    return truncate(redact(text), limit)


def safe_attributes(data: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """``data`` as span attributes: secret-named keys dropped, text values redacted."""
    result: dict[str, AttributeValue] = {}
    for key, value in data.items():
        if is_secret_key(str(key)):
            continue
        converted = attribute_value(value)
        result[str(key)] = redact(converted) if isinstance(converted, str) else converted
    return result
