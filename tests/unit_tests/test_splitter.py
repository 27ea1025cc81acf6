from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import BaseDocumentTransformer, Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.runnables import RunnableLambda

from oscar_langchain._runnable import ANNOTATION_EVENT
from oscar_langchain.embeddings import OfflineEmbeddings
from oscar_langchain.errors import ConfigurationError
from oscar_langchain.splitter import SemanticTextSplitter, SentenceSegmenter
from oscar_langchain.tokens import TokenCounter

TEXT = (
    "# Cats\n\nCats purr when content. A cat sleeps most of the day. Kittens play with yarn.\n\n"
    "# Markets\n\nStocks fell 3.5% on Monday. Bond yields rose, e.g. the 10-year note. "
    "Investors fear inflation.\n\n```python\nprint('code stays whole. really.')\n```\n"
)


class SpyEmbeddings(Embeddings):
    """Counts every text it embeds, per call."""

    def __init__(self) -> None:
        self.inner = DeterministicFakeEmbedding(size=32)
        self.calls: list[list[str]] = []
        self.queries = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self.queries += 1
        return self.inner.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    @property
    def embedded(self) -> Counter[str]:
        return Counter(t for call in self.calls for t in call)


def make(**kwargs: Any) -> tuple[SemanticTextSplitter, SpyEmbeddings]:
    spy = SpyEmbeddings()
    kwargs.setdefault("max_tokens", 24)
    return SemanticTextSplitter(embeddings=spy, **kwargs), spy


def test_each_sentence_is_embedded_exactly_once_in_batches() -> None:
    splitter, spy = make(batch_size=4)
    docs = splitter.split_text(TEXT)
    sentences = [s.text(TEXT) for s in SentenceSegmenter()(TEXT)]
    assert len(sentences) == 9
    assert list(spy.embedded.elements()) == sentences  # each once, in order, nothing else
    assert [len(c) for c in spy.calls] == [4, 4, 1]
    assert spy.queries == 0
    assert "".join(docs) == TEXT


async def test_async_embeds_each_sentence_once_too() -> None:
    splitter, spy = make(batch_size=3)
    docs = await splitter.atransform_documents([Document(page_content=TEXT)])
    assert sorted(spy.embedded.values()) == [1] * 9
    assert "".join(d.page_content for d in docs) == TEXT
    assert docs == splitter.transform_documents([Document(page_content=TEXT)])


def test_metadata_offsets_tokens_and_scores() -> None:
    splitter, _ = make()
    docs = splitter.create_documents([TEXT], metadatas=[{"source": "a.md"}])
    counter = TokenCounter()
    for i, doc in enumerate(docs):
        meta = doc.metadata
        assert meta["source"] == "a.md"
        assert TEXT[meta["start_index"] : meta["end_index"]] == doc.page_content
        assert meta["token_count"] == counter.count(doc.page_content) <= 24
        assert (meta["breakpoint_score"] is None) == (i == 0)
    assert docs[-1].metadata["end_index"] == len(TEXT)


def test_runnable_accepts_str_document_and_list() -> None:
    splitter, _ = make()
    doc = Document(page_content=TEXT, metadata={"id": 7})
    from_str = splitter.invoke(TEXT)
    from_doc = splitter.invoke(doc)
    from_list = splitter.invoke([doc, Document(page_content="Short one.")])
    assert [d.page_content for d in from_str] == [d.page_content for d in from_doc]
    assert all(d.metadata["id"] == 7 for d in from_doc)
    assert from_list[-1].page_content == "Short one." and "id" not in from_list[-1].metadata
    assert splitter.batch([TEXT, "A. B."])[1][0].page_content == "A. B."
    assert doc.metadata == {"id": 7}  # the input is not mutated


async def test_async_runnable_and_split_text_match_sync() -> None:
    splitter, _ = make()
    assert [d.page_content for d in await splitter.ainvoke(TEXT)] == splitter.split_text(TEXT)
    assert await splitter.asplit_text(TEXT) == splitter.split_text(TEXT)
    assert await splitter.acreate_documents([TEXT]) == splitter.create_documents([TEXT])


@pytest.mark.parametrize("bad", [None, 42, b"bytes", {"text": "x"}])
def test_non_string_input_is_a_clear_error(bad: object) -> None:
    splitter, _ = make()
    with pytest.raises(TypeError, match="expected str"):
        splitter.invoke(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected str"):
        splitter.split_text(bad)  # type: ignore[arg-type]


def test_other_input_errors() -> None:
    splitter, _ = make()
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        splitter.invoke([Document(page_content="a"), "b"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="texts"):
        splitter.create_documents("not a list")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="metadatas"):
        splitter.create_documents(["a", "b"], metadatas=[{}])
    with pytest.raises(TypeError, match="unexpected keyword"):
        splitter.transform_documents([], chunk_size=3)
    with pytest.raises(TypeError, match="text: expected str"):
        splitter.split_documents(
            [Document(page_content="x")] * 0 + [Document.model_construct(page_content=3)]
        )  # type: ignore[list-item]


@pytest.mark.parametrize("text", ["", "   ", "\n\t\n"])
async def test_blank_input_gives_no_chunks(text: str) -> None:
    splitter, spy = make()
    assert splitter.split_text(text) == []
    assert await splitter.ainvoke(text) == []
    assert spy.calls == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.integers(6, 40))
def test_property_reassembly_and_limit(text: str, max_tokens: int) -> None:
    splitter = SemanticTextSplitter(
        embeddings=DeterministicFakeEmbedding(size=8), max_tokens=max_tokens
    )
    docs = splitter.split_documents([Document(page_content=text)])
    assert "".join(text[d.metadata["start_index"] : d.metadata["end_index"]] for d in docs) == (
        text if text.strip() else ""
    )
    assert all(d.metadata["token_count"] <= max_tokens for d in docs)


def test_configuration_errors_name_the_field() -> None:
    # pydantic wraps the ConfigurationError; its message names the field
    with pytest.raises(ValueError, match="max_tokens: must be >= 1"):
        SemanticTextSplitter(embeddings=DeterministicFakeEmbedding(size=4), max_tokens=0)
    with pytest.raises(ValueError, match="overlap_tokens"):
        SemanticTextSplitter(embeddings=DeterministicFakeEmbedding(size=4), overlap_tokens=400)
    with pytest.raises(ValueError, match="extra"):
        SemanticTextSplitter(chunk_size=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="paragraph_weight"):
        SemanticTextSplitter(paragraph_weight=float("nan"))


def test_defaults_are_offline_embeddings_and_token_counter() -> None:
    splitter = SemanticTextSplitter(max_tokens=16)
    docs = splitter.split_text(TEXT)
    assert "".join(docs) == TEXT
    assert all(TokenCounter().count(d) <= 16 for d in docs)
    assert isinstance(splitter._embeddings, OfflineEmbeddings)
    assert splitter.config.max_tokens == 16
    assert splitter.config.paragraph_weight == float("inf")  # layout first
    assert splitter.config.topic_quantile == 0.95  # strong topic shifts get their own chunk
    assert splitter.count_tokens("hello world") == 2


def test_bad_embeddings_output_is_reported() -> None:
    class Short(SpyEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return super().embed_documents(texts)[:-1]

    splitter = SemanticTextSplitter(embeddings=Short(), max_tokens=24)
    with pytest.raises(ValueError, match="embeddings: returned"):
        splitter.split_text(TEXT)


def test_drop_in_document_transformer_and_chain() -> None:
    splitter, _ = make(overlap_tokens=4, min_tokens=4, mode="gradient")
    assert isinstance(splitter, BaseDocumentTransformer)
    chain = splitter | RunnableLambda(lambda docs: [d.metadata["token_count"] for d in docs])
    counts = chain.invoke(TEXT)
    assert counts and max(counts) <= 24
    docs = splitter.split_text(TEXT)
    assert any(d.metadata.get("overlap_chars") for d in splitter.invoke(TEXT)) or len(docs) == 1


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    splitter, _ = make(show_progress=True)
    splitter.split_text(TEXT)
    assert "embedding sentences" in capsys.readouterr().err
    quiet, _ = make()  # None: off when not on a terminal
    quiet.split_text(TEXT)
    assert capsys.readouterr().err == ""


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append((name, data))


async def test_run_is_annotated_with_the_chunk_count() -> None:
    splitter, _ = make()
    rec = Recorder()
    docs = splitter.invoke(TEXT, config={"callbacks": [rec]})
    await splitter.ainvoke(TEXT, config={"callbacks": [rec]})
    assert rec.events == [(ANNOTATION_EVENT, {"oscar.splitter.chunks": len(docs)})] * 2
