"""Test doubles shared by the callbacks tests: an OTel setup and a fake chat model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

SECRET = "sk-test1234567890abcdefghijklmnop"


def otel() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def tree(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> list[Any]:
    """Spans as nested ``(name, [children])``, children sorted by name then start."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        by_parent.setdefault(parent, []).append(span)

    def build(parent: int | None) -> list[Any]:
        kids = sorted(by_parent.get(parent, []), key=lambda s: (s.name, s.start_time or 0))
        return [(s.name, build(s.context.span_id)) for s in kids]

    return build(None)


class FakeChat(BaseChatModel):
    """A chat model that reports usage, response model and finish reason like OpenAI's."""

    reply: str = "hello there"
    model_name: str = "gpt-4o-mini"
    temperature: float = 0.2
    max_tokens: int = 64
    api_key: SecretStr = SecretStr(SECRET)
    fail: BaseException | None = None

    @property
    def _llm_type(self) -> str:
        return "fake-openai"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(
            ls_provider="openai",
            ls_model_name=self.model_name,
            ls_model_type="chat",
            ls_temperature=self.temperature,
            ls_max_tokens=self.max_tokens,
        )

    def _message(self) -> AIMessage:
        return AIMessage(
            content=self.reply,
            usage_metadata={"input_tokens": 11, "output_tokens": 3, "total_tokens": 14},
            response_metadata={"model_name": f"{self.model_name}-2024", "finish_reason": "stop"},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.fail is not None:
            raise self.fail
        return ChatResult(generations=[ChatGeneration(message=self._message())])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            chunk = ChatGenerationChunk(
                message=AIMessageChunk(
                    content=word if i == 0 else " " + word,
                    usage_metadata=(
                        {"input_tokens": 11, "output_tokens": 3, "total_tokens": 14}
                        if last
                        else None
                    ),
                    response_metadata=(
                        {"model_name": f"{self.model_name}-2024", "finish_reason": "stop"}
                        if last
                        else {}
                    ),
                )
            )
            if run_manager is not None:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
