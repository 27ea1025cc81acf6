from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from oscar_langchain.errors import ConfigurationError, TokenizerError, UnknownModelError
from oscar_langchain.models import ModelInfo, ModelRegistry
from oscar_langchain.tokens import (
    ENCODINGS,
    TokenCounter,
    _shipped_file,
    encoding_for,
    get_encoding,
    load_bpe_ranks,
)

SAMPLES = [
    "hello world",
    "Hello, World! It's 2026-11-23 and we've got 3.14159 apples.",
    "Ünïcödé — 日本語のテキスト, emojis 🤖🚀 and tabs\tand\nnewlines\r\n",
    "def f(x):\n    return x ** 2  # code\n",
    "<|endoftext|> is treated as plain text here",
    "   leading and trailing spaces   ",
    "",
]

OFFICIAL_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


@pytest.fixture(scope="module")
def reference_encodings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tiktoken.Encoding]:
    """tiktoken's own encodings built by tiktoken's own loader, from a pre-filled cache dir."""
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    refs: dict[str, tiktoken.Encoding] = {}
    import os

    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        from tiktoken_ext import openai_public

        for name, url in OFFICIAL_URLS.items():
            key = hashlib.sha1(url.encode()).hexdigest()
            data = _shipped_file(name).read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            (cache / key).write_bytes(data)
            refs[name] = tiktoken.Encoding(**getattr(openai_public, name)())
    finally:
        if old is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old
    return refs


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_ids_equal_tiktokens_own(
    name: str, reference_encodings: dict[str, tiktoken.Encoding]
) -> None:
    ours = TokenCounter(name)
    ref = reference_encodings[name]
    for text in SAMPLES:
        assert ours.encode(text) == ref.encode_ordinary(text)
        assert ours.count(text) == len(ref.encode_ordinary(text))
        assert ours.decode(ours.encode(text)) == text
    assert ours.encoding.n_vocab == ref.n_vocab


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=200))
def test_ids_equal_reference_on_any_text(
    reference_encodings: dict[str, tiktoken.Encoding], text: str
) -> None:
    for name, ref in reference_encodings.items():
        counter = TokenCounter(name)
        ids = counter.encode(text)
        assert ids == ref.encode_ordinary(text)
        assert counter.decode(ids) == text
        assert counter.count_batch([text, text]) == [len(ids), len(ids)]


def test_known_ids() -> None:
    assert TokenCounter("cl100k_base").encode("hello world") == [15339, 1917]
    assert TokenCounter("o200k_base").encode("hello world") == [24912, 2375]


def test_encoding_cached_per_process() -> None:
    assert get_encoding("o200k_base") is get_encoding("o200k_base")


def test_unknown_encoding() -> None:
    with pytest.raises(TokenizerError, match="unknown encoding"):
        get_encoding("p50k_base")


def test_corrupted_bpe_file_is_rejected(tmp_path: Path) -> None:
    source = _shipped_file("cl100k_base")
    raw = source.read_bytes()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    corrupted = tmp_path / "cl100k_base.tiktoken"
    corrupted.write_bytes(data.replace(b" 1000\n", b" 1001\n", 1))
    with pytest.raises(TokenizerError, match="corrupted"):
        load_bpe_ranks(corrupted, ENCODINGS["cl100k_base"].sha256)
    gz = tmp_path / "ok.tiktoken.gz"
    shutil.copy(source, gz) if raw[:2] == b"\x1f\x8b" else gz.write_bytes(gzip.compress(data))
    assert len(load_bpe_ranks(gz, ENCODINGS["cl100k_base"].sha256)) == 100256
    with pytest.raises(TokenizerError, match="cannot read"):
        load_bpe_ranks(tmp_path / "missing.tiktoken", ENCODINGS["cl100k_base"].sha256)


def test_missing_shipped_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import oscar_langchain.tokens as tokens

    monkeypatch.setattr(tokens, "find_spec", lambda name: None)
    with pytest.raises(TokenizerError, match="no shipped BPE file"):
        tokens._shipped_file("o200k_base")


def test_non_string_text() -> None:
    counter = TokenCounter()
    for bad in (None, 12, b"bytes", ["a"]):
        with pytest.raises(ConfigurationError, match="text"):
            counter.count(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"texts\[1\]"):
        counter.count_batch(["ok", 3])  # type: ignore[list-item]


def test_encoding_for_models() -> None:
    assert encoding_for("gpt-4o").name == "o200k_base"
    assert encoding_for("gpt-4").name == "cl100k_base"
    assert encoding_for("gpt-4o-2024-08-06").name == "o200k_base"
    with pytest.raises(UnknownModelError, match="not in the model registry"):
        encoding_for("no-such-model")
    assert encoding_for("no-such-model", default="cl100k_base").name == "cl100k_base"
    registry = ModelRegistry([ModelInfo("mine", encoding="cl100k_base")])
    assert TokenCounter.for_model("mine", registry).encoding_name == "cl100k_base"


def test_count_messages_openai_overhead() -> None:
    counter = TokenCounter("cl100k_base")
    messages = [SystemMessage("You are helpful."), HumanMessage("What is 2+2?", name="bob")]
    expected = 3  # reply priming
    expected += 3 + counter.count("system") + counter.count("You are helpful.")
    expected += 3 + counter.count("user") + counter.count("What is 2+2?") + 1 + counter.count("bob")
    assert counter.count_messages(messages) == expected
    # another model's encoding
    assert counter.count_messages(messages, model="gpt-4o") == TokenCounter(
        "o200k_base"
    ).count_messages(messages)


def test_count_messages_parts_and_tools() -> None:
    counter = TokenCounter()
    multimodal = HumanMessage(
        content=[
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": "data:..."}},
            "tail",
            {"type": "other", "x": 1},
        ]
    )
    n = counter.message_tokens(multimodal)
    assert n == 3 + counter.count("user") + counter.count("Describe") + 85 + counter.count(
        "tail"
    ) + counter.count('{"type": "other", "x": 1}')
    call = AIMessage("", tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "1"}])
    assert counter.message_tokens(call) == 3 + counter.count("assistant") + counter.count(
        "search"
    ) + counter.count('{"q": "x"}')
    assert (
        counter.message_tokens(ToolMessage("42", tool_call_id="1")) == 3 + counter.count("tool") + 1
    )


def test_count_messages_bad_input() -> None:
    counter = TokenCounter()
    with pytest.raises(ConfigurationError, match="messages"):
        counter.count_messages("hello")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="messages"):
        counter.count_messages([{"role": "user"}])


def test_trim_text() -> None:
    counter = TokenCounter()
    text = "The quick brown fox jumps over the lazy dog. " * 10
    trimmed = counter.trim(text, 7)
    assert counter.count(trimmed) <= 7
    assert text.startswith(trimmed)
    assert counter.trim("short", 100) == "short"
    assert counter.trim("日本語のテキスト", 1) in ("", "日本", "日", "日本語")
    assert counter.trim(text, 0) == ""
    with pytest.raises(ConfigurationError, match="max_tokens"):
        counter.trim(text, -1)
    with pytest.raises(ConfigurationError, match="max_tokens"):
        counter.trim(text, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="text_or_messages"):
        counter.trim(42, 3)  # type: ignore[arg-type]


def test_trim_messages_keeps_system_and_latest() -> None:
    counter = TokenCounter()
    system = SystemMessage("Be brief.")
    history = [HumanMessage(f"question number {i}") for i in range(10)]
    messages = [system, *history]
    budget = counter.count_messages([system, *history[-3:]])
    kept = counter.trim(messages, budget)
    assert kept == [system, *history[-3:]]
    assert counter.count_messages(kept) <= budget
    assert counter.trim(messages, 5) == []
    assert counter.trim(messages, 10_000) == messages
    assert repr(counter) == "TokenCounter('o200k_base')"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "alpha",
                "Beta",
                "GAMMA",
                " ",
                "  ",
                "\n",
                "\n\n",
                "42",
                "3.5",
                "it's",
                "日本",
                "🤖",
                ",",
                "x",
            ]
        ),
        min_size=0,
        max_size=300,
    ),
    st.integers(min_value=1, max_value=64),
)
def test_parallel_encoding_is_exact(parts: list[str], threshold: int) -> None:
    text = "".join(parts)
    for name in ("cl100k_base", "o200k_base"):
        serial = TokenCounter(name, num_threads=1)
        parallel = TokenCounter(name, num_threads=3, parallel_threshold=threshold)
        assert parallel.encode(text) == serial.encode(text)
        assert parallel.count(text) == serial.count(text)


def test_parallel_on_real_prose() -> None:
    text = ("The quick brown fox jumps over the lazy dog. It's 3.14 o'clock! " * 3000) + "end"
    serial = TokenCounter("o200k_base", num_threads=1)
    parallel = TokenCounter("o200k_base", num_threads=2, parallel_threshold=1000)
    assert parallel.encode(text) == serial.encode(text)
    assert parallel.count(text) == serial.count(text)
    no_cut = "日本語" * 2000  # no ASCII word boundary: one piece
    assert parallel.count(no_cut) == serial.count(no_cut)
    assert parallel.encode(no_cut) == serial.encode(no_cut)


def test_counter_arguments() -> None:
    with pytest.raises(ConfigurationError, match="num_threads"):
        TokenCounter(num_threads=0)
    with pytest.raises(ConfigurationError, match="parallel_threshold"):
        TokenCounter(parallel_threshold=0)
