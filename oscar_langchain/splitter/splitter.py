"""``SemanticTextSplitter``: the Runnable and LangChain text-splitter shell over the core.

It is a Runnable (``str``, ``Document`` or ``list[Document]`` in, ``list[Document]``
out) and a drop-in LangChain document transformer with the text-splitter methods
(``split_text``, ``create_documents``, ``split_documents``, ``transform_documents``
and their async forms). Sync and async paths share :mod:`.core`; they differ only in
how the embeddings are awaited.

Example:
    >>> from langchain_core.embeddings import DeterministicFakeEmbedding
    >>> splitter = SemanticTextSplitter(
    ...     embeddings=DeterministicFakeEmbedding(size=16), max_tokens=12,
    ...     length_function=lambda s: len(s.split()))
    >>> docs = splitter.invoke("One two three. Four five six. Seven eight nine ten eleven.")
    >>> "".join(d.page_content for d in docs)
    'One two three. Four five six. Seven eight nine ten eleven.'
    >>> all(d.metadata["token_count"] <= 12 for d in docs)
    True
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.documents import BaseDocumentTransformer, Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, PrivateAttr

from oscar_langchain._runnable import (
    OscarRunnable,
    aannotate_run,
    annotate_run,
    reject_call_kwargs,
)
from oscar_langchain.errors import ConfigurationError
from oscar_langchain.splitter.core import (
    BreakMode,
    Chunk,
    ChunkerConfig,
    LengthFunction,
    SpanLength,
    Units,
    batched,
    chunk_units,
    prepare_units,
)
from oscar_langchain.splitter.partition import Objective
from oscar_langchain.splitter.segmenter import Segmenter

__all__ = ["SemanticTextSplitter", "SplitterInput"]

SplitterInput = str | Document | list[Document]
"""What the Runnable accepts."""

_PROGRESS_HINT = "pip install oscar-langchain[progress]"


class SemanticTextSplitter(OscarRunnable[SplitterInput, list[Document]], BaseDocumentTransformer):
    """Semantic chunks under a hard token limit, as exact spans of the source.

    Each chunk's metadata holds ``start_index`` and ``end_index`` (so that
    ``text[start_index:end_index] == page_content`` and, without overlap, the chunks
    concatenate into the source), ``token_count`` and ``breakpoint_score`` (the
    distance across the break before the chunk; ``None`` for the first one).

    Example:
        >>> from langchain_core.embeddings import DeterministicFakeEmbedding
        >>> splitter = SemanticTextSplitter(embeddings=DeterministicFakeEmbedding(size=8),
        ...                                 max_tokens=12, length_function=len)
        >>> splitter.split_text("Hi there. How are you?")
        ['Hi there. ', 'How are you?']
    """

    # paragraph_weight defaults to inf: JSON writes it as Infinity (not null) and reads it back.
    model_config = ConfigDict(
        arbitrary_types_allowed=True, extra="forbid", ser_json_inf_nan="constants"
    )

    embeddings: Embeddings | None = None
    """Any LangChain embeddings; default ``OfflineEmbeddings()``."""
    max_tokens: int = 400
    """Hard limit on a chunk's length, by ``length_function``."""
    min_tokens: int = 0
    """Chunks shorter than this merge into their more similar neighbour (0: off)."""
    overlap_tokens: int = 0
    """Tokens of the previous chunk's last sentences repeated at a chunk's start (0: off)."""
    mode: BreakMode = "optimal"
    """``"optimal"`` (dynamic programming) or ``"percentile"``, ``"standard_deviation"``,
    ``"interquartile"``, ``"gradient"``."""
    threshold_amount: float | None = None
    """Amount for a threshold rule (``None``: the rule's default)."""
    window: int = 1
    """Sentences averaged on each side of a gap to score it."""
    objective: Objective = "cohesion"
    """``"optimal"`` mode: ``"cohesion"`` (the least within-chunk variance, with the
    fewest chunks ``max_tokens`` allows plus one at each strong topic shift) or
    ``"pairs"`` (summed pairwise similarity less ``baseline``, a break wherever that
    pays)."""
    topic_quantile: float | None = 0.95
    """``objective="cohesion"``: a topic shift gets a chunk of its own, even where the
    text would fit in fewer, when it is as strong as the document's gaps at this
    quantile (higher: fewer, fuller chunks; ``None``: the fewest chunks)."""
    baseline: float | None = 0.0
    """``objective="pairs"``: similarity under which sentences are better apart (higher:
    smaller chunks; ``None``: the document's mean pairwise similarity)."""
    paragraph_weight: float = math.inf
    """``"optimal"`` mode: extra cost of a break inside a paragraph (``math.inf``: only
    where the paragraphs do not fit ``max_tokens``; 0: ignore layout)."""
    batch_size: int = 256
    """Sentences per embeddings call."""
    max_sentences: int = 256
    """``"optimal"`` mode: most sentences in one chunk."""
    length_function: Callable[[str], int] | None = None
    """Measures chunks; default ``TokenCounter().count`` (o200k_base)."""
    segmenter: Segmenter | None = None
    """Sentence segmenter; default :class:`SentenceSegmenter`."""
    show_progress: bool | None = None
    """tqdm progress while embedding: ``None`` shows it for large inputs on a terminal."""
    progress_min_sentences: int = 2048
    """With ``show_progress=None``, the fewest sentences that get a progress bar."""

    _config: ChunkerConfig = PrivateAttr()
    _length: LengthFunction = PrivateAttr()
    _span_length: Callable[[str], SpanLength] | None = PrivateAttr()
    _embeddings: Embeddings = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        """Validate the chunking settings and resolve the defaults."""
        self._config = ChunkerConfig(
            max_tokens=self.max_tokens,
            min_tokens=self.min_tokens,
            overlap_tokens=self.overlap_tokens,
            mode=self.mode,
            threshold_amount=self.threshold_amount,
            window=self.window,
            objective=self.objective,
            topic_quantile=self.topic_quantile,
            baseline=self.baseline,
            paragraph_weight=self.paragraph_weight,
            batch_size=self.batch_size,
            max_sentences=self.max_sentences,
        )
        self._span_length = None
        if self.length_function is not None:
            self._length = self.length_function
        else:
            from oscar_langchain.splitter.counting import SpanCounter
            from oscar_langchain.tokens import TokenCounter

            counter = TokenCounter()
            self._length = counter.count
            self._span_length = lambda text: SpanCounter(text, counter).count
        if self.embeddings is not None:
            self._embeddings = self.embeddings
        else:
            from oscar_langchain.embeddings import OfflineEmbeddings

            self._embeddings = OfflineEmbeddings()

    @property
    def config(self) -> ChunkerConfig:
        """The validated chunking settings."""
        return self._config

    def count_tokens(self, text: str) -> int:
        """Length of ``text`` by the splitter's length function (what ``max_tokens`` bounds)."""
        return self._length(text)

    # -- the shared steps --------------------------------------------------------------

    def _units(self, text: object) -> Units:
        return prepare_units(
            text,  # type: ignore[arg-type]
            self._config,
            self._length,
            self.segmenter,
            span_length=self._span_length,
        )

    @contextmanager
    def _progress(self, total: int) -> Iterator[Callable[[int], None]]:
        show = self.show_progress
        if show is None:
            show = total >= self.progress_min_sentences and sys.stderr.isatty()
        if not show:
            yield lambda _n: None
            return
        try:
            from tqdm.auto import tqdm
        except ImportError as exc:  # pragma: no cover - tqdm is a dev dependency
            raise ImportError(f"show_progress needs tqdm: {_PROGRESS_HINT}") from exc
        with tqdm(total=total, desc="embedding sentences", unit="sent") as bar:
            yield bar.update

    def _as_matrix(self, rows: Sequence[Any], count: int) -> npt.NDArray[Any]:
        matrix = np.asarray(rows, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != count:
            raise ValueError(
                f"embeddings: returned {matrix.shape[0] if matrix.ndim else 0} vectors "
                f"for {count} sentences"
            )
        return matrix

    def _embed(self, texts: list[str]) -> npt.NDArray[Any]:
        from oscar_langchain.embeddings import OfflineEmbeddings

        batches: list[Any] = []
        fast = isinstance(self._embeddings, OfflineEmbeddings)
        with self._progress(len(texts)) as advance:
            for batch in batched(texts, self._config.batch_size):
                if fast:  # same vectors as embed_documents, without the list round trip
                    batches.append(self._embeddings.embed_array(list(batch)))  # type: ignore[attr-defined]
                else:
                    batches.append(
                        self._as_matrix(self._embeddings.embed_documents(list(batch)), len(batch))
                    )
                advance(len(batch))
        return np.vstack(batches) if batches else np.zeros((0, 1), dtype=np.float32)

    async def _aembed(self, texts: list[str]) -> npt.NDArray[Any]:
        batches: list[Any] = []
        with self._progress(len(texts)) as advance:
            for batch in batched(texts, self._config.batch_size):
                rows = await self._embeddings.aembed_documents(list(batch))
                batches.append(self._as_matrix(rows, len(batch)))
                advance(len(batch))
        return np.vstack(batches) if batches else np.zeros((0, 1), dtype=np.float32)

    # -- text-splitter API ---------------------------------------------------------------

    def split_chunks(self, text: str) -> list[Chunk]:
        """Chunks of ``text`` with offsets, token counts and breakpoint scores.

        Raises:
            TypeError: when ``text`` is not a string.
        """
        units = self._units(text)
        return chunk_units(units, self._embed(units.texts), self._config)

    async def asplit_chunks(self, text: str) -> list[Chunk]:
        """Async form of :meth:`split_chunks`."""
        units = self._units(text)
        return chunk_units(units, await self._aembed(units.texts), self._config)

    def split_text(self, text: str) -> list[str]:
        """Chunk texts of ``text`` (LangChain ``TextSplitter.split_text``)."""
        return [text[c.start : c.end] for c in self.split_chunks(text)]

    async def asplit_text(self, text: str) -> list[str]:
        """Async form of :meth:`split_text`."""
        return [text[c.start : c.end] for c in await self.asplit_chunks(text)]

    def create_documents(
        self, texts: list[str], metadatas: list[dict[Any, Any]] | None = None
    ) -> list[Document]:
        """Chunk documents of ``texts`` (LangChain ``TextSplitter.create_documents``)."""
        return [
            doc
            for text, meta in _paired(texts, metadatas)
            for doc in _documents(text, meta, self.split_chunks(text))
        ]

    async def acreate_documents(
        self, texts: list[str], metadatas: list[dict[Any, Any]] | None = None
    ) -> list[Document]:
        """Async form of :meth:`create_documents`."""
        out: list[Document] = []
        for text, meta in _paired(texts, metadatas):
            out.extend(_documents(text, meta, await self.asplit_chunks(text)))
        return out

    def split_documents(self, documents: Iterable[Document]) -> list[Document]:
        """Chunk ``documents``, keeping each one's metadata on its chunks."""
        docs = _check_documents(documents)
        return self.create_documents([d.page_content for d in docs], [d.metadata for d in docs])

    async def asplit_documents(self, documents: Iterable[Document]) -> list[Document]:
        """Async form of :meth:`split_documents`."""
        docs = _check_documents(documents)
        return await self.acreate_documents(
            [d.page_content for d in docs], [d.metadata for d in docs]
        )

    def transform_documents(self, documents: Sequence[Document], **kwargs: Any) -> list[Document]:
        """LangChain ``BaseDocumentTransformer`` API: same as :meth:`split_documents`."""
        _no_kwargs(kwargs)
        return self.split_documents(documents)

    async def atransform_documents(
        self, documents: Sequence[Document], **kwargs: Any
    ) -> list[Document]:
        """Async form of :meth:`transform_documents`."""
        _no_kwargs(kwargs)
        return await self.asplit_documents(documents)

    # -- Runnable ------------------------------------------------------------------------

    def _invoke(
        self,
        input: SplitterInput,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> list[Document]:
        reject_call_kwargs(self, kwargs)
        chunks = self.split_documents(_as_documents(input))
        annotate_run(run_manager, {"oscar.splitter.chunks": len(chunks)})
        return chunks

    async def _ainvoke(
        self,
        input: SplitterInput,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> list[Document]:
        reject_call_kwargs(self, kwargs)
        chunks = await self.asplit_documents(_as_documents(input))
        await aannotate_run(run_manager, {"oscar.splitter.chunks": len(chunks)})
        return chunks


def _as_documents(value: object) -> list[Document]:
    if isinstance(value, str):
        return [Document(page_content=value)]
    if isinstance(value, Document):
        return [value]
    if isinstance(value, list):
        return _check_documents(value)
    raise TypeError(f"input: expected str, Document or list[Document], got {type(value).__name__}")


def _check_documents(documents: Iterable[Document]) -> list[Document]:
    docs = list(documents)
    for i, doc in enumerate(docs):
        if not isinstance(doc, Document):
            raise TypeError(f"documents[{i}]: expected Document, got {type(doc).__name__}")
    return docs


def _paired(
    texts: list[str], metadatas: list[dict[Any, Any]] | None
) -> list[tuple[str, dict[Any, Any]]]:
    if isinstance(texts, str):
        raise TypeError("texts: expected a list of str, got a str")
    metas = metadatas if metadatas is not None else [{}] * len(texts)
    if len(metas) != len(texts):
        raise ConfigurationError("metadatas", "must have one entry per text")
    return list(zip(texts, metas, strict=True))


def _documents(text: str, metadata: dict[Any, Any], chunks: list[Chunk]) -> list[Document]:
    docs = []
    for c in chunks:
        meta = {
            **metadata,
            "start_index": c.start,
            "end_index": c.end,
            "token_count": c.tokens,
            "breakpoint_score": c.score,
        }
        if c.overlap:
            meta["overlap_chars"] = c.overlap
        docs.append(Document(page_content=text[c.start : c.end], metadata=meta))
    return docs


def _no_kwargs(kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
