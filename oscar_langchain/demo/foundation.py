"""Demo section: offline token counting, costs and the error classifier on real inputs."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage

from oscar_langchain.demo.context import DemoContext
from oscar_langchain.errors import CircuitOpenError, classify_error
from oscar_langchain.models import default_registry
from oscar_langchain.tokens import TokenCounter


class _StatusError(Exception):
    """An error shaped like an HTTP client's status error, for the classifier showcase."""

    def __init__(self, message: str, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status
        self.headers = headers or {}


def run(ctx: DemoContext) -> None:
    """Count the corpus's tokens, price a request on several models, classify errors."""
    out = ctx.out
    out("== Tokens and costs (offline tiktoken encodings, sha256-verified) ==")
    for name in ("o200k_base", "cl100k_base"):
        counter = TokenCounter(name)
        total = sum(counter.count(doc.page_content) for doc in ctx.corpus)
        out(f"  {name:<12} corpus of {len(ctx.corpus)} documents: {total} tokens")
    messages = [
        SystemMessage("Answer from the context."),
        HumanMessage(
            "\n\n".join(d.page_content for d in ctx.corpus[:3]) + "\n\n" + ctx.questions[0]
        ),
    ]
    registry = default_registry()
    out(f"  a {len(messages)}-message RAG prompt, 300 output tokens:")
    for model in ("gpt-4o", "gpt-4o-mini", "claude-3-5-haiku", "gemma-3-270m"):
        info = registry.get(model)
        prompt = TokenCounter(info.encoding).count_messages(messages)
        cost = info.cost(prompt, 300)
        out(f"    {model:<18} {prompt:>5} prompt tokens  ${cost:.6f}")
    out("== Error classifier ==")
    samples: list[BaseException] = [
        _StatusError("Rate limit reached", 429, {"retry-after": "2"}),
        _StatusError("This model's maximum context length is 8192 tokens", 400),
        _StatusError("Bad gateway", 502),
        _StatusError("Incorrect API key provided", 401),
        TimeoutError("read timed out"),
        ConnectionResetError(104, "Connection reset by peer"),
        CircuitOpenError("gpt-4o", "open", 4.5),
    ]
    for exc in samples:
        v = classify_error(exc)
        after = f" retry_after={v.retry_after}s" if v.retry_after is not None else ""
        out(
            f"  {type(exc).__name__:<22} -> {v.kind.value:<14} retryable={v.retryable!s:<5} "
            f"trips_breaker={v.counts_as_failure!s:<5}{after}"
        )
