"""Hybrid retrieval: an incremental BM25 index, exact dense search, fusion, a query optimizer."""

from oscar_langchain.retrieval.bm25 import BM25Index, BM25Params
from oscar_langchain.retrieval.dense import DenseIndex
from oscar_langchain.retrieval.fusion import (
    ScoreStats,
    fuse,
    score_fusion,
    weighted_rrf,
    zscore_fusion,
)
from oscar_langchain.retrieval.query_optimizer import QueryHistory, QueryOptimizer, rm3_expansion
from oscar_langchain.retrieval.retriever import HybridRetriever
from oscar_langchain.retrieval.tokenize import Tokenizer

__all__ = [
    "BM25Index",
    "BM25Params",
    "DenseIndex",
    "HybridRetriever",
    "QueryHistory",
    "QueryOptimizer",
    "ScoreStats",
    "Tokenizer",
    "fuse",
    "rm3_expansion",
    "score_fusion",
    "weighted_rrf",
    "zscore_fusion",
]
