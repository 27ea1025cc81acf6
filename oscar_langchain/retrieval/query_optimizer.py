r"""QueryOptimizer: normalise queries, expand them by pseudo-relevance feedback, learn.

A Runnable (``str`` in, ``str`` or ``[original, rewrite]`` out) to put in front of a
retriever with ``|``. Three steps:

1. **Normalise**: Unicode NFKC, control characters dropped, whitespace collapsed.
2. **Expand** (RM3-style, from the index's own statistics): the top
   ``feedback_docs`` BM25 hits of the query form a relevance model
   ``P(t|R) = sum_d P(d|q) tf(t,d)/|d|``; its best ``expansion_terms`` terms (not
   already in the query, in fewer than ``max_df_ratio`` of documents) are appended.
   Only queries of at most ``max_query_terms`` terms are expanded: feedback helps
   short keyword queries, while long questions are already specific (on the
   chunking_eval questions, expanding them lowers BM25's recall).
3. **Learn** (bounded :class:`QueryHistory`, ``max_history`` entries, LRU): a
   query's rewrite is remembered with the version of the BM25 index it was computed
   from (recomputed, keeping the rewards, once documents were added or deleted), and
   :meth:`QueryOptimizer.feedback` records a
   reward in [0, 1] for what was served. Each query then gets the variant
   (expanded or plain) with the better smoothed mean reward, so an expansion that
   users (or the quality monitor) report as unhelpful is dropped for that query.

The optimizer is on unless ``enabled=False`` or the call's config says
``{"configurable": {"query_optimizer_enabled": False}}`` (a bool, 0/1, or the strings
true/false, 1/0, yes/no in any case; anything else is a ``ConfigurationError``); when
off it passes the query through untouched.

Example:
    >>> from langchain_core.embeddings import DeterministicFakeEmbedding
    >>> from oscar_langchain.retrieval.retriever import HybridRetriever
    >>> r = HybridRetriever.from_texts(
    ...     ["solar panels convert sunlight", "solar inverter efficiency",
    ...      "wind turbines and blades", "hydro dams store water"],
    ...     embeddings=DeterministicFakeEmbedding(size=8))
    >>> opt = QueryOptimizer(retriever=r, expansion_terms=2, feedback_docs=2)
    >>> opt.invoke("  Solar\tpanels ")
    'Solar panels convert sunlight'
    >>> opt.invoke("solar panels", {"configurable": {"query_optimizer_enabled": False}})
    'solar panels'
"""

from __future__ import annotations

import asyncio
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, Field, PrivateAttr

from oscar_langchain._runnable import (
    OscarRunnable,
    aannotate_run,
    annotate_run,
    reject_call_kwargs,
)
from oscar_langchain.retrieval._retriever_util import config_flag
from oscar_langchain.retrieval.bm25 import BM25Index
from oscar_langchain.retrieval.retriever import HybridRetriever

__all__ = ["QueryHistory", "QueryOptimizer", "normalise_query", "rm3_expansion"]

_SPACE = re.compile(r"\s+")
_PRIOR = 0.5  # prior mean reward of an untried variant (one pseudo-observation)


def normalise_query(query: str) -> str:
    r"""NFKC, control characters removed, whitespace collapsed and stripped.

    Example:
        >>> normalise_query("  ﬁnd\u200b  the\ncat ")
        'find the cat'
    """
    text = unicodedata.normalize("NFKC", query)
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C" or c.isspace())
    return _SPACE.sub(" ", text).strip()


def rm3_expansion(
    index: BM25Index,
    tokens: Sequence[str],
    feedback_docs: int = 5,
    expansion_terms: int = 5,
    max_df_ratio: float = 0.5,
) -> list[tuple[str, float]]:
    """RM3 expansion terms with their relevance-model weights, best first.

    Example:
        >>> idx = BM25Index()
        >>> idx.add(["1", "2", "3"], [["sun", "panel", "roof"], ["sun", "roof"], ["wind"]])
        >>> [t for t, _ in rm3_expansion(idx, ["panel"], expansion_terms=1, max_df_ratio=1.0)]
        ['roof']
    """
    if not tokens or len(index) == 0:
        return []
    hits = index.search(tokens, feedback_docs)
    total = sum(max(s, 0.0) for _, s in hits)
    if total <= 0:
        return []
    model: dict[str, float] = {}
    for doc_id, score in hits:
        tfs = index.term_frequencies(doc_id)
        length = sum(tfs.values()) or 1
        for term, tf in tfs.items():
            model[term] = model.get(term, 0.0) + (max(score, 0.0) / total) * tf / length
    seen, n_docs = set(tokens), len(index)
    ranked = sorted(
        (
            (t, w)
            for t, w in model.items()
            if t not in seen and index.document_frequency(t) <= max_df_ratio * n_docs
        ),
        key=lambda item: (-item[1], item[0]),
    )
    return ranked[:expansion_terms]


class _Decided(NamedTuple):
    output: Any
    attributes: dict[str, Any]


class _Pending(NamedTuple):
    """A query that is not in the history at ``state`` yet: it needs an expansion."""

    plain: str
    state: Hashable


@dataclass
class _Entry:
    rewrite: str
    state: Hashable = None  # what the rewrite was computed from
    served: str = "expanded"
    expanded_sum: float = 0.0
    expanded_n: int = 0
    plain_sum: float = 0.0
    plain_n: int = 0

    def choice(self) -> str:
        expanded = (self.expanded_sum + _PRIOR) / (self.expanded_n + 1)
        plain = (self.plain_sum + _PRIOR) / (self.plain_n + 1)
        return "expanded" if expanded >= plain else "plain"


class QueryHistory:
    """A bounded, thread-safe LRU memory of rewrites and their rewards.

    Each rewrite is stored with the ``state`` it was computed from (for the optimizer:
    the BM25 index and its version); a lookup at another state misses, and remembering
    a new rewrite for a known query keeps its rewards.

    Example:
        >>> h = QueryHistory(max_history=1)
        >>> h.remember("a", "a x"); h.remember("b", "b y")
        'expanded'
        'expanded'
        >>> len(h), h.lookup("a"), h.lookup("b"), h.lookup("b", state=2)
        (1, None, ('b y', 'expanded'), None)
    """

    def __init__(self, max_history: int = 10_000) -> None:
        if max_history <= 0:
            raise ValueError(f"max_history must be > 0, got {max_history}")
        self.max_history = max_history
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, query: str, state: Hashable = None) -> tuple[str, str] | None:
        """``(rewrite, variant to serve)`` for a query remembered at ``state``, else ``None``."""
        with self._lock:
            entry = self._entries.get(query)
            if entry is None or entry.state != state:
                return None
            self._entries.move_to_end(query)
            entry.served = entry.choice()
            return entry.rewrite, entry.served

    def remember(self, query: str, rewrite: str, state: Hashable = None) -> str:
        """Store ``query``'s rewrite computed at ``state``; return the variant to serve.

        A known query keeps its rewards; the least recently used entry goes if full.
        """
        with self._lock:
            entry = self._entries.get(query)
            if entry is None:
                entry = self._entries[query] = _Entry(rewrite, state)
            else:
                entry.rewrite, entry.state = rewrite, state
            self._entries.move_to_end(query)
            while len(self._entries) > self.max_history:
                self._entries.popitem(last=False)
            entry.served = entry.choice()
            return entry.served

    def record(self, query: str, reward: float) -> bool:
        """Credit ``reward`` to the variant last served for ``query``; False if unknown."""
        with self._lock:
            entry = self._entries.get(query)
            if entry is None:
                return False
            if entry.served == "expanded":
                entry.expanded_sum += reward
                entry.expanded_n += 1
            else:
                entry.plain_sum += reward
                entry.plain_n += 1
            return True


class QueryOptimizer(OscarRunnable[str, Any]):
    """Normalise and expand queries for a :class:`HybridRetriever`; learn from feedback.

    Example:
        >>> QueryOptimizer().invoke("  what   is BM25? ")
        'what is BM25?'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    retriever: HybridRetriever | None = None
    """Source of the index statistics for expansion; ``None`` = normalise only."""
    enabled: bool = True
    """Default of the ``query_optimizer_enabled`` config toggle."""
    expansion_terms: int = Field(default=3, ge=0)
    """How many expansion terms to append (0 = no expansion)."""
    feedback_docs: int = Field(default=5, gt=0)
    """How many top BM25 documents form the relevance model."""
    max_query_terms: int | None = Field(default=6, gt=0)
    """Expand only queries with at most this many terms (``None``: any length)."""
    max_df_ratio: float = Field(default=0.5, gt=0.0, le=1.0)
    """Terms in more than this fraction of documents are never added."""
    max_history: int = Field(default=10_000, gt=0)
    """Bound of the learned history (least recently used entries are evicted)."""
    output: Literal["str", "list"] = "str"
    """``"str"``: the chosen query; ``"list"``: ``[normalised, rewrite]``."""

    _history: QueryHistory = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        """Create the history."""
        self._history = QueryHistory(self.max_history)

    @property
    def history(self) -> QueryHistory:
        """The learned rewrites and rewards."""
        return self._history

    def feedback(self, query: str, reward: float) -> bool:
        """Record how good the results served for ``query`` were (0 bad .. 1 good).

        Returns:
            Whether the query was known to the history.
        """
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"reward must be in [0, 1], got {reward}")
        return self._history.record(normalise_query(query), reward)

    def _index_state(self) -> Hashable:
        """What an expansion depends on: the BM25 index and its version."""
        if self.retriever is None or not self._expands():
            return None
        index = self.retriever.bm25
        return id(index), index.version

    def _expands(self) -> bool:
        """Whether a history miss computes an expansion (else the rewrite is the query)."""
        return self.retriever is not None and self.expansion_terms > 0

    def _expand(self, query: str) -> str:
        """``query`` with its RM3 terms appended (CPU-bound: a BM25 search and a sort)."""
        if self.retriever is None or not self._expands():
            return query
        tokens = self.retriever.tokenizer(query)
        if self.max_query_terms is not None and len(tokens) > self.max_query_terms:
            return query
        extra = rm3_expansion(
            self.retriever.bm25, tokens, self.feedback_docs, self.expansion_terms, self.max_df_ratio
        )
        return " ".join([query, *(t for t, _ in extra)])

    def _begin(self, query: str, enabled: bool | None) -> _Decided | _Pending:
        """The decision when no expansion is needed, else what :meth:`_remember` needs."""
        if not (self.enabled if enabled is None else enabled):
            output = [query, query] if self.output == "list" else query
            return _Decided(output, {"oscar.query_optimizer.enabled": False})
        if not isinstance(query, str):
            raise TypeError(f"QueryOptimizer takes a str, got {type(query).__name__}")
        plain = normalise_query(query)
        state = self._index_state()  # read first: a change during expansion is seen next time
        known = self._history.lookup(plain, state)
        if known is not None:
            return self._finish(plain, *known, history_hit=True)
        return _Pending(plain, state)

    def _remember(self, pending: _Pending, rewrite: str) -> _Decided:
        variant = self._history.remember(pending.plain, rewrite, pending.state)
        return self._finish(pending.plain, rewrite, variant, history_hit=False)

    def _finish(self, plain: str, rewrite: str, variant: str, *, history_hit: bool) -> _Decided:
        chosen = rewrite if variant == "expanded" else plain
        attributes = {
            "oscar.query_optimizer.enabled": True,
            "oscar.query_optimizer.history_hit": history_hit,
            "oscar.query_optimizer.variant": variant,
        }
        return _Decided([plain, chosen] if self.output == "list" else chosen, attributes)

    def optimize(self, query: str, enabled: bool | None = None) -> tuple[Any, dict[str, Any]]:
        """The output for ``query`` and attributes describing the decision."""
        step = self._begin(query, enabled)
        if isinstance(step, _Pending):
            step = self._remember(step, self._expand(step.plain))
        return step

    async def aoptimize(
        self, query: str, enabled: bool | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """:meth:`optimize`, the expansion (a BM25 search, CPU-bound) on a worker thread.

        ``asyncio.to_thread`` runs it in a copy of the caller's context, so context
        variables (tracing, callbacks) are seen there; a disabled optimizer, a history
        hit or an optimizer without expansion never leaves the event loop.
        """
        step = self._begin(query, enabled)
        if isinstance(step, _Pending):
            rewrite = (
                await asyncio.to_thread(self._expand, step.plain) if self._expands() else step.plain
            )
            step = self._remember(step, rewrite)
        return step

    def _invoke(
        self,
        input: str,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Any:
        reject_call_kwargs(self, kwargs)
        output, attributes = self.optimize(input, _toggle(config))
        annotate_run(run_manager, attributes)
        return output

    async def _ainvoke(
        self,
        input: str,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Any:
        reject_call_kwargs(self, kwargs)
        output, attributes = await self.aoptimize(input, _toggle(config))
        await aannotate_run(run_manager, attributes)
        return output


def _toggle(config: RunnableConfig) -> bool | None:
    value = (config.get("configurable") or {}).get("query_optimizer_enabled")
    return None if value is None else config_flag(value, "query_optimizer_enabled")
