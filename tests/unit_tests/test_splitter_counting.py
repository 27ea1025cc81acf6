"""SpanCounter: one encoding pass, counts identical to TokenCounter.count on every span."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oscar_langchain.splitter import ChunkerConfig, chunk_text
from oscar_langchain.splitter.counting import SpanCounter
from oscar_langchain.tokens import TokenCounter

COUNTER = TokenCounter()
CL100K = TokenCounter("cl100k_base")

# Letters and spaces make many safe points; the rest probes their edges.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("ab Cd  ef's.\n\t1,é漢🙂 xy")),
        st.characters(codec="utf-8"),
    ),
    max_size=300,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT, st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), max_size=30))
def test_span_counts_equal_direct_counts(text: str, pairs: list[tuple[int, int]]) -> None:
    spans = [(min(a, b) % (len(text) + 1), max(a, b) % (len(text) + 1)) for a, b in pairs]
    spans = [(s, e) for s, e in spans if s <= e]
    for counter in (COUNTER, CL100K):
        got = SpanCounter(text, counter).count(spans)
        assert got == [counter.count(text[s:e]) for s, e in spans]


def test_every_span_of_small_texts() -> None:
    for text in ["", "a b", "ab  cd ef", "x y\nz w", "é a b ü", "日本 語 ab cd ef", "a" * 40]:
        counter = SpanCounter(text, COUNTER)
        spans = [(i, j) for i in range(len(text)) for j in range(i, len(text) + 1)]
        assert counter.count(spans) == [COUNTER.count(text[i:j]) for i, j in spans]
    assert SpanCounter("abc", COUNTER).count([]) == []


def test_large_text_counts_on_a_thread_and_keeps_the_limit() -> None:
    rng = np.random.default_rng(7)
    vocab = ["alpha", "beta", "gamma", "delta", "3.14", "naïve", "日本", "end."]
    words = rng.choice(vocab, size=16_000).tolist()
    text = " ".join(w + ("\n\n" if i % 97 == 96 else "") for i, w in enumerate(words))
    assert len(text) >= 1 << 16
    cfg = ChunkerConfig(max_tokens=50)
    chunks = chunk_text(
        text,
        lambda ts: [[float(len(t)), 1.0] for t in ts],
        cfg,
        COUNTER.count,
        span_length=lambda t: SpanCounter(t, COUNTER).count,
    )
    assert "".join(text[c.start : c.end] for c in chunks) == text
    assert all(c.tokens == COUNTER.count(text[c.start : c.end]) <= 50 for c in chunks)


def test_a_span_length_returning_the_wrong_number_of_counts_is_an_error() -> None:
    with pytest.raises(ValueError, match="span_length"):
        chunk_text(
            "One two. Three four.",
            lambda ts: [[1.0, 0.0]] * len(ts),
            ChunkerConfig(max_tokens=8),
            COUNTER.count,
            span_length=lambda t: lambda spans: [1],
        )


def test_span_length_on_the_worker_thread_sees_the_callers_context() -> None:
    import contextvars

    from oscar_langchain.splitter.core import prepare_units

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    marker.set("caller")
    seen: list[str] = []

    def span_length(text: str) -> Any:
        seen.append(marker.get())
        return SpanCounter(text, COUNTER).count

    text = "One two three. " * 5000  # long enough to count on a thread
    assert len(text) >= 1 << 16
    prepare_units(text, ChunkerConfig(max_tokens=50), COUNTER.count, span_length=span_length)
    assert seen == ["caller"]
