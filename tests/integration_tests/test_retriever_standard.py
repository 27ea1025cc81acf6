"""LangChain's standard retriever suite against HybridRetriever (no network)."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_tests.integration_tests import RetrieversIntegrationTests

from oscar_langchain.retrieval import HybridRetriever

CORPUS = [
    "LangChain retrievers return documents for a query.",
    "BM25 ranks documents by term frequency and inverse document frequency.",
    "Dense retrieval compares embedding vectors by cosine similarity.",
    "Reciprocal rank fusion combines several rankings into one.",
    "A circuit breaker stops calls to a failing service.",
    "Semantic caches answer repeated questions without calling the model.",
]


class SeededHybridRetriever(HybridRetriever):
    """A HybridRetriever that indexes a small corpus at construction."""

    def __init__(self, **fields: Any) -> None:
        fields.setdefault("embeddings", DeterministicFakeEmbedding(size=32))
        super().__init__(**fields)
        self.add_texts(CORPUS)


class TestHybridRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[SeededHybridRetriever]:
        return SeededHybridRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "how does BM25 rank documents?"
