"""HybridRetriever: BM25 and embeddings searched concurrently, fused, persistent.

The LangChain shell over :mod:`~oscar_langchain.retrieval.bm25`,
:mod:`~oscar_langchain.retrieval.dense` and :mod:`~oscar_langchain.retrieval.fusion`.
Both sides run at once (a worker thread on the sync path, tasks on the async path)
and are fused by a weighted sum of z-scores (each side's scores standardised by
their distribution over the whole corpus), of min-max normalised scores, or by
weighted reciprocal rank fusion.
``k``, the weights, the fusion method and a metadata filter can be chosen per call,
as keyword arguments to ``invoke`` or as ``config={"configurable": {"search_kwargs":
{...}}}``. A weight of 0 turns a side off: BM25-only and dense-only retrievers are
the same class.

Example:
    >>> from langchain_core.embeddings import DeterministicFakeEmbedding
    >>> retriever = HybridRetriever.from_texts(
    ...     ["cats purr", "dogs bark", "birds sing"],
    ...     metadatas=[{"kind": "pet"}, {"kind": "pet"}, {"kind": "wild"}],
    ...     embeddings=DeterministicFakeEmbedding(size=16), k=2)
    >>> retriever.invoke("why do cats purr", dense_weight=0)[0].page_content
    'cats purr'
    >>> len(retriever.invoke("animals", k=3, filter={"kind": "pet"}))
    2
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from oscar_langchain._runnable import ANNOTATION_EVENT
from oscar_langchain.errors import ConfigurationError, RetrievalError
from oscar_langchain.retrieval._retriever_util import (
    MetadataFilter,
    configured,
    matches,
    prepare_documents,
    to_documents,
)
from oscar_langchain.retrieval.bm25 import BM25Index, BM25Params
from oscar_langchain.retrieval.dense import DenseIndex
from oscar_langchain.retrieval.fusion import Fusion, Hits, ScoreStats, fuse
from oscar_langchain.retrieval.persist import (
    atomic_directory,
    read_json,
    read_manifest,
    write_json,
    write_manifest,
)
from oscar_langchain.retrieval.tokenize import Tokenizer

__all__ = ["HybridRetriever", "MetadataFilter"]

_FORMAT = "oscar-hybrid"
_NO_HITS = Hits([], ScoreStats(0.0, 0.0))
_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR  # noqa: PLW0603 - one shared, lazily created pool
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="oscar-retrieval")
        return _EXECUTOR


def _copies(docs: Mapping[str, Document], ids: Iterable[str]) -> list[Document]:
    """Copies of the documents with these ids, skipping absent ones.

    One lookup per id: a ``d in docs`` test followed by ``docs[d]`` races a concurrent
    delete (searches read ``_docs`` without the lock) and raises ``KeyError``.
    """
    found = (docs.get(d) for d in ids)
    return [doc.model_copy(deep=True) for doc in found if doc is not None]


def _default_embeddings() -> Embeddings:
    from oscar_langchain.embeddings import OfflineEmbeddings

    return OfflineEmbeddings()


class HybridRetriever(BaseRetriever):
    """BM25 + dense retrieval, fused; documents can be added, deleted, saved, loaded.

    Example:
        >>> from langchain_core.embeddings import DeterministicFakeEmbedding
        >>> r = HybridRetriever(embeddings=DeterministicFakeEmbedding(size=8), k=1)
        >>> r.add_texts(["red apples", "green pears"], ids=["a", "p"])
        ['a', 'p']
        >>> r.invoke("apples", bm25_weight=1, dense_weight=0)[0].id
        'a'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    embeddings: Embeddings = Field(default_factory=_default_embeddings)
    """Any LangChain embeddings (default: oscar's offline ``OfflineEmbeddings``)."""
    k: int = Field(default=4, gt=0)
    """Number of documents returned."""
    bm25_weight: float = Field(default=1.0, ge=0.0)
    """Weight of the BM25 ranking in the fusion (0 = dense-only)."""
    dense_weight: float = Field(default=1.0, ge=0.0)
    """Weight of the dense ranking in the fusion (0 = BM25-only)."""
    fusion: Fusion = "zscore"
    """``"zscore"`` (weighted sum of z-scores against each side's score distribution over
    the whole corpus for the query: the best of the three on chunking_eval, see
    docs/bench_retriever.md), ``"score"`` (weighted sum of min-max normalised top-list
    scores) or ``"rrf"`` (weighted reciprocal rank fusion)."""
    rrf_c: float = Field(default=60.0, ge=0.0)
    """The RRF constant ``c`` in ``w / (c + rank)``."""
    fetch_k: int = Field(default=50, gt=0)
    """Candidates taken from each side before fusing (at least ``k``)."""
    mmr: bool = False
    """Diversify the dense side with maximal marginal relevance."""
    mmr_lambda: float = Field(default=0.5, ge=0.0, le=1.0)
    """MMR trade-off: 1 = relevance only, 0 = diversity only."""
    bm25_params: BM25Params = Field(default_factory=BM25Params)
    """BM25 variant and parameters."""
    tokenizer: Tokenizer = Field(default_factory=Tokenizer)
    """How texts and queries are split into BM25 terms."""

    _bm25: BM25Index = PrivateAttr()
    _dense: DenseIndex = PrivateAttr(default_factory=DenseIndex)
    _docs: dict[str, Document] = PrivateAttr(default_factory=dict)
    _lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)

    @model_validator(mode="after")
    def _check_weights(self) -> HybridRetriever:
        if self.bm25_weight == 0 and self.dense_weight == 0:
            raise ConfigurationError("bm25_weight", "bm25_weight and dense_weight are both 0")
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Create the empty indexes."""
        self._bm25 = BM25Index(self.bm25_params)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_documents(
        cls, documents: Sequence[Document], ids: Sequence[str] | None = None, **fields: Any
    ) -> HybridRetriever:
        """Build a retriever (``fields`` are its pydantic fields) and index ``documents``.

        Raises:
            ValueError: when ``documents`` is empty.
        """
        if not documents:
            raise ValueError("cannot build a retriever from an empty corpus")
        retriever = cls(**fields)
        retriever.add_documents(documents, ids=ids)
        return retriever

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        **fields: Any,
    ) -> HybridRetriever:
        """Build a retriever from texts; see :meth:`from_documents`."""
        return cls.from_documents(to_documents(texts, metadatas), ids=ids, **fields)

    # -- mutation --------------------------------------------------------------------
    @property
    def bm25(self) -> BM25Index:
        """The BM25 index (for query expansion and statistics)."""
        return self._bm25

    def __len__(self) -> int:
        return len(self._docs)

    def _check_vectors(self, docs: list[Document], vectors: Sequence[Sequence[float]]) -> None:
        """Raise before any index changes when the embeddings' output cannot be stored."""
        name = type(self.embeddings).__name__
        if len(vectors) != len(docs):
            raise ValueError(
                f"embeddings ({name}) returned {len(vectors)} vectors for {len(docs)} documents"
            )
        dims = sorted({len(v) for v in vectors})
        expected = self._dense.dimension
        if len(dims) > 1 or dims[0] == 0 or (expected is not None and dims[0] != expected):
            held = "empty" if expected is None else f"of dimension {expected}"
            raise ValueError(
                f"embeddings ({name}) returned vectors of dimension "
                f"{', '.join(map(str, dims))}; the dense index is {held}"
            )

    def _commit(self, ids: list[str], docs: list[Document], vectors: list[list[float]]) -> None:
        """Add to both indexes and the documents, or (on a bad vector batch) to none."""
        tokens = self.tokenizer.many(d.page_content for d in docs)
        with self._lock:
            self._check_vectors(docs, vectors)
            # The dense add validates before it mutates; BM25's only preconditions (as
            # many token lists as ids, unique ids) hold by construction here.
            self._dense.add(ids, vectors)
            self._bm25.add(ids, tokens)
            self._docs.update(zip(ids, docs, strict=True))

    def add_documents(
        self, documents: Sequence[Document], ids: Sequence[str] | None = None
    ) -> list[str]:
        """Index documents (an existing id is replaced) and return their ids.

        Ids come from ``ids``, else ``Document.id``, else a hash of content and metadata.
        The add is all-or-nothing.

        Raises:
            ValueError: when the embeddings return a wrong number of vectors, vectors of
                mixed dimensions or of a dimension other than the index's (nothing is
                added then).
        """
        out_ids, docs = prepare_documents(documents, ids)
        if docs:
            self._commit(
                out_ids, docs, self.embeddings.embed_documents([d.page_content for d in docs])
            )
        return out_ids

    async def aadd_documents(
        self, documents: Sequence[Document], ids: Sequence[str] | None = None
    ) -> list[str]:
        """Async form of :meth:`add_documents` (embeds with ``aembed_documents``)."""
        out_ids, docs = prepare_documents(documents, ids)
        if docs:
            vectors = await self.embeddings.aembed_documents([d.page_content for d in docs])
            await asyncio.to_thread(self._commit, out_ids, docs, vectors)
        return out_ids

    def add_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Index texts; see :meth:`add_documents`."""
        return self.add_documents(to_documents(texts, metadatas), ids=ids)

    def delete(self, ids: Collection[str]) -> None:
        """Remove documents by id.

        Raises:
            RetrievalError: when an id is unknown (nothing is deleted then).
        """
        with self._lock:
            unknown = [d for d in ids if d not in self._docs]
            if unknown:
                raise RetrievalError(f"cannot delete unknown document ids: {unknown[:5]}")
            self._bm25.delete(ids)
            self._dense.delete(ids)
            for doc_id in ids:
                self._docs.pop(doc_id, None)

    def get_by_ids(self, ids: Iterable[str]) -> list[Document]:
        """The stored documents with these ids (unknown ids are skipped)."""
        return _copies(self._docs, ids)

    # -- search ----------------------------------------------------------------------
    def invoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        """Retrieve; ``config["configurable"]["search_kwargs"]`` supplies defaults."""
        return super().invoke(input, config, **{**configured(config), **kwargs})

    async def ainvoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        """Async form of :meth:`invoke`."""
        return await super().ainvoke(input, config, **{**configured(config), **kwargs})

    def _plan(
        self,
        query: str,
        k: int | None,
        bm25_weight: float | None,
        dense_weight: float | None,
        filter: MetadataFilter | None,
    ) -> tuple[int, float, float, set[str] | None]:
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be a non-empty string")
        k = self.k if k is None else k
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        wb = self.bm25_weight if bm25_weight is None else bm25_weight
        wd = self.dense_weight if dense_weight is None else dense_weight
        if wb < 0 or wd < 0 or wb + wd == 0:
            raise ValueError(f"weights must be >= 0 and not both 0, got {wb}, {wd}")
        allowed = None
        if filter is not None:
            allowed = {i for i, d in list(self._docs.items()) if matches(d.metadata, filter)}
        return k, wb, wd, allowed

    def _bm25_side(self, query: str, fetch: int, allowed: set[str] | None) -> Hits:
        tokens = self.tokenizer(query)
        return self._bm25.query(tokens, fetch, allowed) if tokens else _NO_HITS

    def _dense_search(self, vector: list[float], fetch: int, allowed: set[str] | None) -> Hits:
        mmr_lambda = self.mmr_lambda if self.mmr else None
        return self._dense.query(vector, fetch, allowed, mmr_lambda=mmr_lambda, fetch_k=2 * fetch)

    def _finish(
        self,
        hits: tuple[Hits, Hits],
        weights: tuple[float, float],
        k: int,
        fusion: Fusion | None,
    ) -> tuple[list[Document], dict[str, Any]]:
        method = fusion or self.fusion
        rankings = (hits[0].ranking, hits[1].ranking)
        fused = fuse(method, rankings, weights, self.rrf_c, (hits[0].stats, hits[1].stats))
        docs = self._docs
        attributes = {
            "oscar.retrieval.fusion": method,
            "oscar.retrieval.k": k,
            "oscar.retrieval.bm25_weight": weights[0],
            "oscar.retrieval.dense_weight": weights[1],
            "oscar.retrieval.bm25_hits": len(rankings[0]),
            "oscar.retrieval.dense_hits": len(rankings[1]),
        }
        return _copies(docs, (d for d, _ in fused[:k])), attributes

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        bm25_weight: float | None = None,
        dense_weight: float | None = None,
        fusion: Fusion | None = None,
        filter: MetadataFilter | None = None,
    ) -> list[Document]:
        k, wb, wd, allowed = self._plan(query, k, bm25_weight, dense_weight, filter)
        fetch = max(self.fetch_k, k) if wb and wd else k
        future = None
        if wd:
            embed = self.embeddings.embed_query
            # The user's embeddings run on the worker in a copy of the caller's context,
            # so LangChain's callback/tracing and OpenTelemetry context variables hold.
            future = _executor().submit(
                contextvars.copy_context().run,
                lambda: self._dense_search(embed(query), fetch, allowed),
            )
        try:
            sparse_hits = self._bm25_side(query, fetch, allowed) if wb else _NO_HITS
        finally:
            dense_hits = future.result() if future is not None else _NO_HITS
        found, attributes = self._finish((sparse_hits, dense_hits), (wb, wd), k, fusion)
        run_manager.get_child().on_custom_event(
            ANNOTATION_EVENT, attributes, run_id=run_manager.run_id
        )
        return found

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        bm25_weight: float | None = None,
        dense_weight: float | None = None,
        fusion: Fusion | None = None,
        filter: MetadataFilter | None = None,
    ) -> list[Document]:
        k, wb, wd, allowed = self._plan(query, k, bm25_weight, dense_weight, filter)
        fetch = max(self.fetch_k, k) if wb and wd else k

        async def dense() -> Hits:
            if not wd:
                return _NO_HITS
            vector = await self.embeddings.aembed_query(query)
            return await asyncio.to_thread(self._dense_search, vector, fetch, allowed)

        async def sparse() -> Hits:
            if not wb:
                return _NO_HITS
            return await asyncio.to_thread(self._bm25_side, query, fetch, allowed)

        sparse_hits, dense_hits = await asyncio.gather(sparse(), dense())
        found, attributes = self._finish((sparse_hits, dense_hits), (wb, wd), k, fusion)
        await run_manager.get_child().on_custom_event(
            ANNOTATION_EVENT, attributes, run_id=run_manager.run_id
        )
        return found

    # -- persistence -----------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save indexes, documents and settings to directory ``path``, atomically.

        Raises:
            RetrievalError: when a document's metadata is not JSON-serialisable (the
                previous content of ``path``, if any, is left untouched).
        """
        with self._lock, atomic_directory(path) as tmp:
            (tmp / "bm25").mkdir()
            (tmp / "dense").mkdir()
            self._bm25.dump_into(tmp / "bm25")
            self._dense.dump_into(tmp / "dense")
            rows = [[d, doc.page_content, doc.metadata] for d, doc in self._docs.items()]
            try:
                write_json(tmp / "docs.json", rows)
            except (TypeError, ValueError) as exc:
                raise RetrievalError(f"document metadata is not JSON-serialisable: {exc}") from exc
            write_manifest(tmp, _FORMAT, self._settings())

    def _settings(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "bm25_weight": self.bm25_weight,
            "dense_weight": self.dense_weight,
            "fusion": self.fusion,
            "rrf_c": self.rrf_c,
            "fetch_k": self.fetch_k,
            "mmr": self.mmr,
            "mmr_lambda": self.mmr_lambda,
            "bm25_params": asdict(self.bm25_params),
            "tokenizer": self.tokenizer.to_config(),
            "embeddings": type(self.embeddings).__name__,
        }

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        embeddings: Embeddings | None = None,
        mmap: bool = False,
    ) -> HybridRetriever:
        """Load a retriever saved by :meth:`save`.

        Args:
            path: the directory.
            embeddings: embeddings for queries; must be the model the index was built
                with (default: oscar's offline embeddings).
            mmap: memory-map the index arrays read-only.

        Raises:
            RetrievalError: when the directory is missing, incomplete or inconsistent.
        """
        directory = Path(path)
        meta = dict(read_manifest(directory, _FORMAT)["meta"])
        meta.pop("embeddings", None)
        try:
            meta["bm25_params"] = BM25Params(**meta["bm25_params"])
            meta["tokenizer"] = Tokenizer.from_config(meta["tokenizer"])
            extra = {"embeddings": embeddings} if embeddings is not None else {}
            retriever = cls(**meta, **extra)
        except (KeyError, TypeError, ValueError) as exc:
            raise RetrievalError(f"corrupt index at {directory}: bad settings: {exc}") from exc
        retriever._bm25 = BM25Index.load(directory / "bm25", mmap=mmap)
        retriever._dense = DenseIndex.load(directory / "dense", mmap=mmap)
        rows = read_json(directory / "docs.json")
        try:
            retriever._docs = {d: Document(text, metadata=m, id=d) for d, text, m in rows}
        except (TypeError, ValueError) as exc:
            raise RetrievalError(f"corrupt index at {directory}: bad docs.json: {exc}") from exc
        ids = set(retriever._docs)
        if set(retriever._bm25.ids()) != ids or len(retriever._dense) != len(ids):
            raise RetrievalError(f"corrupt index at {directory}: indexes disagree with docs")
        return retriever
