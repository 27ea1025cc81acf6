"""Semantic text splitting under a hard token limit, with exact source offsets."""

from oscar_langchain.splitter.breakpoints import threshold_breaks, window_distances
from oscar_langchain.splitter.core import Chunk, ChunkerConfig, chunk_text
from oscar_langchain.splitter.partition import optimal_partition
from oscar_langchain.splitter.segmenter import (
    Segment,
    Segmenter,
    SentenceSegmenter,
    segmenter_from_sentences,
)
from oscar_langchain.splitter.splitter import SemanticTextSplitter

__all__ = [
    "Chunk",
    "ChunkerConfig",
    "Segment",
    "Segmenter",
    "SemanticTextSplitter",
    "SentenceSegmenter",
    "chunk_text",
    "optimal_partition",
    "segmenter_from_sentences",
    "threshold_breaks",
    "window_distances",
]
