from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.splitter.core import (
    Chunk,
    ChunkerConfig,
    chunk_text,
    chunk_units,
    prepare_units,
    split_oversized,
)
from oscar_langchain.splitter.counting import SpanCounter
from oscar_langchain.splitter.segmenter import Segment
from oscar_langchain.tokens import TokenCounter

COUNTER = TokenCounter()
COUNT = COUNTER.count


def fake_embed(texts: list[str]) -> list[list[float]]:
    """Deterministic vectors from the words of each text (similar words, similar vectors)."""
    out = []
    for text in texts:
        vec = np.zeros(16)
        for word in text.lower().split():
            vec[int(hashlib.md5(word.encode()).hexdigest(), 16) % 16] += 1.0
        out.append(vec.tolist())
    return out


def words(text: str) -> int:
    return len(text.split())


def reassemble(text: str, chunks: list[Chunk]) -> str:
    return "".join(text[c.start + c.overlap : c.end] for c in chunks)


def check(text: str, chunks: list[Chunk], cfg: ChunkerConfig, length=COUNT) -> None:
    if not text.strip():
        assert chunks == []
        return
    assert reassemble(text, chunks) == text
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for prev, cur in itertools.pairwise(chunks):
        assert cur.start + cur.overlap == prev.end
    for c in chunks:
        assert c.tokens == length(text[c.start : c.end]) <= cfg.max_tokens


TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("abc xyz. Dr.!?\n\n#-`,;:é漢🙂\t0123")),
        st.characters(codec="utf-8"),
    ),
    max_size=400,
)
MODES = st.sampled_from(
    ["optimal", "percentile", "standard_deviation", "interquartile", "gradient"]
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT, st.integers(8, 60), MODES, st.integers(0, 20), st.integers(0, 6), st.booleans())
def test_chunks_reassemble_and_respect_max_tokens(
    text: str, max_tokens: int, mode: str, min_tokens: int, overlap: int, by_spans: bool
) -> None:
    cfg = ChunkerConfig(
        max_tokens=max_tokens,
        min_tokens=min(min_tokens, max_tokens),
        overlap_tokens=overlap,
        mode=mode,  # type: ignore[arg-type]
        batch_size=3,
    )
    spans = (lambda t: SpanCounter(t, COUNTER).count) if by_spans else None
    check(text, chunk_text(text, fake_embed, cfg, COUNT, span_length=spans), cfg)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["alpha beta.", "gamma", "delta!", "\n\n", " ", "x" * 30]), max_size=40
    ),
    st.integers(1, 12),
)
def test_any_length_function_is_respected(parts: list[str], max_tokens: int) -> None:
    text = " ".join(parts)
    cfg = ChunkerConfig(max_tokens=max_tokens, mode="percentile")
    check(text, chunk_text(text, fake_embed, cfg, len), cfg, len)


@pytest.mark.parametrize("text", ["", " ", "\n\n\t  \n"])
def test_blank_text_gives_no_chunks(text: str) -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> list[list[float]]:
        calls.append(texts)
        return fake_embed(texts)

    assert chunk_text(text, embed, ChunkerConfig(), COUNT) == []
    assert calls == []


@pytest.mark.parametrize("value", [None, 3, b"bytes", ["a"]])
def test_non_string_input_is_a_clear_error(value: object) -> None:
    with pytest.raises(TypeError, match="text: expected str"):
        chunk_text(value, fake_embed, ChunkerConfig(), COUNT)  # type: ignore[arg-type]


def test_topics_split_where_meaning_changes() -> None:
    text = (
        "Cats purr softly. Cats nap often. Cats purr often. Stocks fell today. Stocks rose today."
    )
    cfg = ChunkerConfig(max_tokens=12)
    chunks = chunk_text(text, fake_embed, cfg, words)
    assert [text[c.start : c.end] for c in chunks] == [
        "Cats purr softly. Cats nap often. Cats purr often. ",
        "Stocks fell today. Stocks rose today.",
    ]
    assert chunks[0].score is None and chunks[1].score is not None and chunks[1].score > 0.5


def test_over_long_sentence_falls_back_to_clauses_then_words_then_characters() -> None:
    text = "one two three, four five six; seven eight nine"
    assert split_oversized(text, 0, len(text), words, 4) == [(0, 15), (15, 30), (30, 46)]
    assert split_oversized(text, 0, 13, words, 1) == [(0, 4), (4, 8), (8, 13)]
    blob = "x" * 25
    assert split_oversized(blob, 0, 25, len, 10) == [(0, 10), (10, 20), (20, 25)]
    lines = "a b c\nd e f\ng h"
    assert split_oversized(lines, 0, len(lines), words, 3) == [(0, 6), (6, 12), (12, 15)]
    with pytest.raises(ValueError, match="max_tokens"):
        split_oversized("abc", 0, 3, lambda s: 5 * len(s), 1)


def test_min_tokens_merges_fragments_into_the_closer_neighbour() -> None:
    text = "Cats purr. Cats nap. Stocks. Dogs bark loudly here. Dogs run fast here."
    plain = ChunkerConfig(max_tokens=6, mode="percentile", threshold_amount=0)
    merged = ChunkerConfig(max_tokens=6, min_tokens=3, mode="percentile", threshold_amount=0)
    before = chunk_text(text, fake_embed, plain, words)
    after = chunk_text(text, fake_embed, merged, words)
    assert min(c.tokens for c in before) < 3
    assert len(after) < len(before)
    check(text, after, merged, words)


def test_min_tokens_cannot_break_the_limit() -> None:
    text = "aaa bbb ccc. ddd. eee fff ggg."
    cfg = ChunkerConfig(max_tokens=3, min_tokens=3, mode="percentile", threshold_amount=0)
    chunks = chunk_text(text, fake_embed, cfg, words)
    check(text, chunks, cfg, words)
    assert [c.tokens for c in chunks] == [3, 1, 3]


def test_overlap_repeats_previous_sentences_within_limits() -> None:
    text = " ".join(f"A{i} b{i}." for i in range(12))

    def by_pair(texts: list[str]) -> list[list[float]]:  # sentences 2k and 2k+1 share a topic
        return [[1.0, 0.0] if int(t.split()[0][1:]) // 2 % 2 else [0.0, 1.0] for t in texts]

    cfg = ChunkerConfig(max_tokens=10, overlap_tokens=2, mode="percentile", threshold_amount=0)
    chunks = chunk_text(text, by_pair, cfg, words)
    check(text, chunks, cfg, words)
    assert [c.tokens for c in chunks] == [4] + [6] * 5
    assert all(words(text[c.start : c.start + c.overlap]) == 2 for c in chunks[1:])


def test_threshold_groups_over_the_limit_are_cut_at_their_widest_gap() -> None:
    text = "Cats purr. Cats nap. Dogs bark. Dogs run."
    cfg = ChunkerConfig(max_tokens=5, mode="standard_deviation", threshold_amount=100)
    chunks = chunk_text(text, fake_embed, cfg, words)
    assert [text[c.start : c.end] for c in chunks] == [
        "Cats purr. Cats nap. ",
        "Dogs bark. Dogs run.",
    ]


def test_non_additive_length_is_rechecked_on_the_chunk() -> None:
    # each sentence counts 1 alone but a chunk costs one extra per sentence boundary
    def length(s: str) -> int:
        return 2 * s.count(".") - 1 if s.count(".") else 1

    text = "a. b. c. d. e."
    cfg = ChunkerConfig(max_tokens=3)
    check(text, chunk_text(text, fake_embed, cfg, length), cfg, length)


def test_progress_and_batches() -> None:
    seen: list[int] = []
    sizes: list[int] = []

    def embed(texts: list[str]) -> list[list[float]]:
        sizes.append(len(texts))
        return fake_embed(texts)

    text = " ".join(f"Sentence number {i}." for i in range(10))
    chunk_text(text, embed, ChunkerConfig(batch_size=4), COUNT, progress=seen.append)
    assert sizes == [4, 4, 2] and seen == sizes


def test_custom_segmenter() -> None:
    def halves(text: str) -> list[Segment]:
        mid = len(text) // 2
        return [Segment(0, mid), Segment(mid, len(text))]

    units = prepare_units("abcdef", ChunkerConfig(), len, halves)
    assert units.texts == ["abc", "def"]
    assert chunk_units(units, np.eye(2), ChunkerConfig(max_tokens=3)) == [
        Chunk(0, 3, 3, None),
        Chunk(3, 6, 3, 1.0),
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"window": 0}, "window"),
        ({"batch_size": 0}, "batch_size"),
        ({"min_tokens": 500}, "min_tokens"),
        ({"overlap_tokens": 400}, "overlap_tokens"),
        ({"mode": "magic"}, "mode"),
        ({"objective": "magic"}, "objective"),
        ({"threshold_amount": float("nan")}, "threshold_amount"),
        ({"paragraph_weight": -1.0}, "paragraph_weight"),
        ({"paragraph_weight": float("nan")}, "paragraph_weight"),
        ({"topic_quantile": 0.0}, "topic_quantile"),
        ({"topic_quantile": 1.5}, "topic_quantile"),
        ({"topic_quantile": float("nan")}, "topic_quantile"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ChunkerConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_default_paragraph_weight_keeps_paragraphs_whole() -> None:
    # Same vectors everywhere: with the "pairs" objective, filling a chunk across the
    # paragraph break scores more similarity, which a finite weight accepts and the
    # default (layout first) does not.
    text = "Aa bb. Cc dd.\n\nEe ff. Gg hh."
    same = lambda ts: [[1.0, 0.0]] * len(ts)  # noqa: E731
    assert ChunkerConfig().paragraph_weight == float("inf")
    for objective in ("cohesion", "pairs"):
        cfg = ChunkerConfig(max_tokens=6, objective=objective)
        layout = chunk_text(text, same, cfg, words)
        assert [text[c.start : c.end] for c in layout] == ["Aa bb. Cc dd.\n\n", "Ee ff. Gg hh."]
    pairs = ChunkerConfig(max_tokens=6, paragraph_weight=0.5, objective="pairs")
    traded = chunk_text(text, same, pairs, words)
    assert len(traded) == 2 and all(c.end != text.index("Ee") for c in traded)
    # a paragraph longer than the limit is still cut inside, once
    long = "Aa bb. Cc dd. Ee ff. Gg hh.\n\nIi jj."
    cut = chunk_text(long, same, ChunkerConfig(max_tokens=6), words)
    assert len(cut) == 2 and cut[0].end < long.index("Gg") + 1


def test_paragraph_weight_prefers_block_boundaries() -> None:
    text = "Aa bb. Cc dd.\n\nEe ff. Gg hh."
    cfg = ChunkerConfig(max_tokens=6, paragraph_weight=5.0, baseline=0.0)
    chunks = chunk_text(text, lambda ts: [[1.0, 0.0]] * len(ts), cfg, words)
    assert [text[c.start : c.end] for c in chunks] == ["Aa bb. Cc dd.\n\n", "Ee ff. Gg hh."]


def test_one_block_documents_split_by_meaning_not_by_count() -> None:
    # No blank line anywhere (a transcript): every break is inside the one paragraph, so
    # the layout says nothing, and the "pairs" objective with a baseline must still add
    # the breaks that separate topics, not just minimise the number of chunks.
    text = "Aa bb. " * 7 + "Xx yy. " * 13
    topic = lambda ts: [[1.0, 0.0] if t.startswith("Aa") else [0.0, 1.0] for t in ts]  # noqa: E731
    cfg = ChunkerConfig(max_tokens=20, baseline=0.5, objective="pairs")
    chunks = chunk_text(text, topic, cfg, words)
    check(text, chunks, cfg, words)
    assert chunks[0].end == text.index("Xx")  # the topic shift is a break
    assert all(len({s[:2] for s in text[c.start : c.end].split(". ") if s}) == 1 for c in chunks)


def test_cohesion_cuts_where_the_topic_changes_where_pairs_fill_a_chunk() -> None:
    # Two topics of five sentences whose vectors are similar (cosine 0.8, as real
    # embeddings of one document are) and a limit of eight sentences: two chunks either
    # way. The pair sum grows with the square of a chunk's size, so "pairs" fills the
    # first chunk across the topics and leaves a fragment; "cohesion" cuts at the shift.
    text = "Aa bb. " * 5 + "Xx yy. " * 5
    topic = lambda ts: [[1.0, 0.0] if t.startswith("Aa") else [0.8, 0.6] for t in ts]  # noqa: E731
    assert ChunkerConfig().objective == "cohesion"
    cohesive = chunk_text(text, topic, ChunkerConfig(max_tokens=16), words)
    assert [c.end for c in cohesive] == [text.index("Xx"), len(text)]
    filled = chunk_text(text, topic, ChunkerConfig(max_tokens=16, objective="pairs"), words)
    assert sorted(c.tokens for c in filled) == [4, 16]
    # a limit the whole text fits: the shift still gets its break (it is the strongest
    # gap), and with no topic price, the fewest chunks: one
    shifted = chunk_text(text, topic, ChunkerConfig(max_tokens=20), words)
    assert [c.end for c in shifted] == [text.index("Xx"), len(text)]
    fewest = ChunkerConfig(max_tokens=20, topic_quantile=None)
    assert len(chunk_text(text, topic, fewest, words)) == 1


def test_the_default_survives_a_json_round_trip() -> None:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from oscar_langchain.splitter import SemanticTextSplitter

    splitter = SemanticTextSplitter(embeddings=DeterministicFakeEmbedding(size=8))
    dumped = splitter.model_dump_json(exclude={"embeddings"})
    assert '"paragraph_weight":Infinity' in dumped
    assert SemanticTextSplitter.model_validate_json(dumped).paragraph_weight == float("inf")
