from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oscar_langchain.splitter.segmenter import (
    Segment,
    SentenceSegmenter,
    segmenter_from_sentences,
    spans_to_segments,
)

SEG = SentenceSegmenter()


def texts(text: str) -> list[str]:
    return [s.text(text) for s in SEG(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Dr. Watson met Mrs. Hudson. They talked.",
            ["Dr. Watson met Mrs. Hudson. ", "They talked."],
        ),
        (
            "Use tools, e.g. hammers. Or i.e. nails.",
            ["Use tools, e.g. hammers. ", "Or i.e. nails."],
        ),
        ("Pi is 3.14159 roughly. Yes.", ["Pi is 3.14159 roughly. ", "Yes."]),
        (
            "See https://example.com/a.b?c=1.2 for more. Then stop.",
            ["See https://example.com/a.b?c=1.2 for more. ", "Then stop."],
        ),
        ("J. R. R. Tolkien wrote books. Many.", ["J. R. R. Tolkien wrote books. ", "Many."]),
        ("Wait... what? Really! Ok.", ["Wait... ", "what? ", "Really! ", "Ok."]),
        ('He said "stop." Then left.', ['He said "stop." ', "Then left."]),
        (
            "as of december 31, 2017. the company grew.",
            ["as of december 31, 2017. ", "the company grew."],
        ),
        ("Born in the U.S. in 1990. He moved.", ["Born in the U.S. in 1990. ", "He moved."]),
    ],
)
def test_prose_rules(text: str, expected: list[str]) -> None:
    assert texts(text) == expected


def test_markdown_blocks() -> None:
    text = (
        "# Title\n\nIntro one. Intro two.\n\n## Code\n"
        "```python\nx = 1. y = 2\n\n# not a heading\n```\n"
        "1. first item. More.\n2. second item\n- bullet\n\nEnd."
    )
    segs = SEG(text)
    assert [s.text(text) for s in segs] == [
        "# Title\n\n",
        "Intro one. ",
        "Intro two.\n\n",
        "## Code\n",
        "```python\nx = 1. y = 2\n\n# not a heading\n```\n",
        "1. first item. ",
        "More.\n",
        "2. second item\n",
        "- bullet\n\n",
        "End.",
    ]
    kinds = [s.kind for s in segs]
    assert kinds[0] == "heading" and kinds[4] == "code" and kinds[5] == "list_item"
    assert segs[2].block_end and not segs[1].block_end


def test_unclosed_fence_is_code_to_the_end() -> None:
    text = "Before.\n~~~\ncode. More code.\n"
    assert texts(text) == ["Before.\n", "~~~\ncode. More code.\n"]


def test_wikitext_headings_and_leading_whitespace() -> None:
    text = "  \n = Valkyria = \n Senjo is a game . It sold well .\n"
    out = texts(text)
    assert out[0] == "  \n = Valkyria = \n" and "".join(out) == text


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t "])
def test_blank_text_gives_nothing(text: str) -> None:
    assert SEG(text) == []


def test_custom_abbreviations() -> None:
    seg = SentenceSegmenter(abbreviations=["approx."])
    assert [s.text("Approx. ten. Dr. No.") for s in seg("Approx. ten. Dr. No.")] == [
        "Approx. ten. ",
        "Dr. ",
        "No.",
    ]


def test_from_sentence_function_maps_offsets() -> None:
    seg = segmenter_from_sentences(lambda t: [p for p in t.split(".") if p])
    text = "A b. C d.  E"
    spans = seg(text)
    assert "".join(s.text(text) for s in spans) == text
    assert spans[0] == Segment(0, 5)
    assert seg("   ") == []
    assert segmenter_from_sentences(lambda t: ["missing"])("abc") == []


def test_spans_to_segments_fills_gaps() -> None:
    text = "ab  cd"
    assert spans_to_segments(text, [(4, 6), (0, 2)]) == [Segment(0, 4), Segment(4, 6)]


@given(st.text(alphabet=st.sampled_from(list("ab .!?\n#-1`~\t,e.g")), max_size=200))
def test_segments_partition_any_text(text: str) -> None:
    segs = SEG(text)
    if not text.strip():
        assert segs == []
        return
    assert segs[0].start == 0 and segs[-1].end == len(text)
    assert all(a.end == b.start for a, b in itertools.pairwise(segs))
    assert all(s.text(text).strip() for s in segs)
