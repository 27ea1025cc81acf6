"""The cache engine: exact and semantic lookups over a backend, with guard and stats.

The lookup logic is written once, as a generator that *yields* the I/O it needs
(``_Get``: read a record, ``_Embed``: embed a text, ``_Sync``: fetch other writers'
vectors) and receives the results. :meth:`CacheEngine.lookup` drives it with blocking
calls and :meth:`CacheEngine.alookup` with awaits, so sync and async cannot drift.

A backend failure, a corrupt entry or vector, or an embedding of another dimension than
the index's is a miss plus an error event (``on_event`` and ``stats().errors``), never an
exception for the caller. A lookup may pass ``decode``, which turns a stored value into
what the caller returns: when it raises :class:`~oscar_langchain.errors.StaleEntryError`
(an output type the caller did not register, a schema that changed) the entry is a miss
plus a ``"stale"`` event (``stats().stale``), and when it raises
:class:`~oscar_langchain.errors.CacheError` (an entry it cannot revive) a miss plus an
error event; a semantic lookup then tries the next neighbour. The first embedding fixes
the index's dimension: after a change of embedding model, vectors stored with the old one
are skipped (one error event per sync) and their entries answer exact lookups only.

Example:
    >>> from oscar_langchain.cache.core import CacheRequest
    >>> engine = CacheEngine()
    >>> req = CacheRequest(text="2+2?", model="m")
    >>> first = engine.lookup(req); first.hit
    False
    >>> engine.store(req, "4", first)
    >>> engine.lookup(req).value, engine.stats()["hits"]
    ('4', 1)
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from oscar_langchain.cache.backends import CacheBackend, Change, MemoryBackend, Record
from oscar_langchain.cache.core import (
    CacheRequest,
    CacheStats,
    Clock,
    ContextPolicy,
    TemperaturePolicy,
)
from oscar_langchain.cache.guard import Guard, GuardLike, RuleGuard, as_guard
from oscar_langchain.cache.vector_index import FloatArray, VectorIndex, as_unit_vector
from oscar_langchain.errors import CacheError, ConfigurationError, StaleEntryError

__all__ = ["CacheEngine", "CacheEvent", "Lookup"]

logger = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], Sequence[Sequence[float]]]
AEmbedFn = Callable[[list[str]], Awaitable[Sequence[Sequence[float]]]]
Decode = Callable[[Any], Any]
"""Stored (decoded JSON) value -> the caller's value; raises ``StaleEntryError`` or
``CacheError`` for an entry that cannot answer."""


@dataclass(frozen=True)
class CacheEvent:
    """Something worth telling an operator: ``"error"``, ``"rejected"`` or ``"stale"``."""

    kind: str
    key: str
    detail: str


@dataclass(frozen=True)
class Lookup:
    """Result of a lookup; pass it back to :meth:`CacheEngine.store` on a miss.

    Attributes:
        hit: whether the cache answered.
        value: the cached value on a hit (decoded JSON, passed through the lookup's
            ``decode`` if it had one).
        key: the exact key a miss should be stored under (``None``: bypassed).
        matched_key: the key of the entry that answered.
        similarity: cosine similarity of a semantic hit (1.0 for exact hits).
        semantic: whether the hit came from a semantic neighbour.
        vector: the request's unit embedding, reused by ``store``.
        partition: the request's semantic partition.
        rejected: neighbours above the threshold that the guard refused.
    """

    hit: bool
    value: Any = None
    key: str | None = None
    matched_key: str | None = None
    similarity: float | None = None
    semantic: bool = False
    vector: bytes | None = None
    partition: str = ""
    rejected: tuple[str, ...] = ()

    @property
    def bypassed(self) -> bool:
        """Whether the temperature policy kept this request away from the cache."""
        return self.key is None


@dataclass(frozen=True)
class _Get:
    key: str


@dataclass(frozen=True)
class _Embed:
    text: str


@dataclass(frozen=True)
class _Sync:
    pass


_Op = _Get | _Embed | _Sync
_Steps = Generator[_Op, Any, Lookup]


@dataclass
class _Failure:
    error: Exception


class CacheEngine:
    """Exact and (with ``embed``) semantic cache over a backend.

    Args:
        backend: where entries live (default: :class:`MemoryBackend`).
        embed: ``texts -> vectors``; enables semantic lookups.
        aembed: async form of ``embed`` (default: ``embed`` in a thread).
        threshold: least cosine similarity for a semantic neighbour.
        guard: verifier a neighbour must pass (default :class:`RuleGuard`; ``None``
            trusts similarity alone).
        top_k: neighbours examined per semantic lookup.
        ttl: seconds an entry lives (``None``: until evicted).
        context_policy: which conversation context a semantic hit must share.
        temperature_policy: what sampling requests do.
        clock: time source for TTL (inject a fake one in tests).
        on_event: called with each :class:`CacheEvent` (errors, rejections).
    """

    def __init__(
        self,
        backend: CacheBackend | None = None,
        *,
        embed: EmbedFn | None = None,
        aembed: AEmbedFn | None = None,
        threshold: float = 0.8,
        guard: GuardLike | None = None,
        use_guard: bool = True,
        top_k: int = 4,
        ttl: float | None = None,
        context_policy: ContextPolicy | None = None,
        temperature_policy: TemperaturePolicy | None = None,
        clock: Clock = time.time,
        on_event: Callable[[CacheEvent], None] | None = None,
    ) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ConfigurationError("threshold", "must be a cosine similarity in [-1, 1]")
        if top_k < 1:
            raise ConfigurationError("top_k", "must be >= 1")
        if ttl is not None and ttl <= 0:
            raise ConfigurationError("ttl", "must be > 0 seconds or None")
        if backend is not None and not isinstance(backend, CacheBackend):
            raise ConfigurationError(
                "backend",
                f"must be a CacheBackend (MemoryBackend, SQLiteBackend, RedisBackend), "
                f"got {type(backend).__name__}",
            )
        for name, fn in (("embed", embed), ("aembed", aembed)):
            if fn is not None and not callable(fn):
                raise ConfigurationError(
                    name,
                    f"must be a function of a list of texts, got {type(fn).__name__}: pass "
                    "embeddings.embed_documents (or use semantic_engine(embeddings))",
                )
        self.backend = backend if backend is not None else MemoryBackend()
        self.embed = embed
        self.aembed = aembed
        self.threshold = threshold
        self.guard: Guard | None = (
            None if not use_guard else as_guard(guard) if guard is not None else RuleGuard()
        )
        self.top_k = top_k
        self.ttl = ttl
        self.context_policy = context_policy or ContextPolicy()
        self.temperature_policy = temperature_policy or TemperaturePolicy()
        self.clock = clock
        self.on_event = on_event
        self.index = VectorIndex()
        self._stats = CacheStats()
        self._cursor = 0
        self._sync_lock = threading.Lock()

    @property
    def semantic(self) -> bool:
        """Whether semantic lookups are on."""
        return self.embed is not None or self.aembed is not None

    # -- events and stats ---------------------------------------------------------------

    def emit(self, kind: str, key: str, detail: str) -> None:
        """Report an event (``"error"`` and ``"stale"`` events also count in ``stats()``)."""
        if kind == "error":
            self._stats.add(errors=1)
            logger.warning("cache %s for %s: %s", kind, key[:16], detail)
        elif kind == "stale":
            self._stats.add(stale=1)
            logger.info("cache entry %s is stale: %s", key[:16], detail)
        if self.on_event is not None:
            self.on_event(CacheEvent(kind, key, detail))

    def stats(self) -> dict[str, float]:
        """Hits, misses, hit rate, semantic hit rate, rejected near-misses, evictions, size."""
        try:
            self._stats.size = self.backend.size()
        except CacheError as exc:
            self.emit("error", "", f"size: {exc}")
        return self._stats.snapshot()

    # -- the lookup logic, once ---------------------------------------------------------

    def _decode(self, record: Record, decode: Decode | None) -> tuple[bool, Any]:
        try:
            value = json.loads(record.payload)
        except ValueError as exc:
            self.emit("error", record.key, f"corrupt entry: {exc}")
            return False, None
        if decode is None:
            return True, value
        try:
            return True, decode(value)
        except StaleEntryError as exc:
            self.emit("stale", record.key, str(exc))
        except CacheError as exc:
            self.emit("error", record.key, f"cannot revive entry: {exc}")
        return False, None

    def _steps(self, request: CacheRequest, decode: Decode | None = None) -> _Steps:
        slot = self.temperature_policy.slot(request.temperature)
        if slot is None:
            self._stats.add(bypassed=1)
            return Lookup(hit=False)
        key = request.exact_key(slot)
        record = yield _Get(key)
        unusable = ""  # the exact entry, read and refused: no neighbour of itself
        if isinstance(record, _Failure):
            self.emit("error", key, f"backend: {record.error}")
        elif record is not None:
            ok, value = self._decode(record, decode)
            unusable = "" if ok else key
            if ok:
                self._stats.add(hits=1)
                return Lookup(True, value, key, key, 1.0)
        if not self.semantic or slot != 0:
            self._stats.add(misses=1)
            return Lookup(False, key=key)
        text = request.normalised_text()
        partition = request.partition(self.context_policy)
        vector = yield _Embed(text)
        if isinstance(vector, _Failure):
            self.emit("error", key, f"embedding: {vector.error}")
            self._stats.add(misses=1)
            return Lookup(False, key=key)
        unit = self._unit(vector, key)
        if unit is None:
            self._stats.add(misses=1)
            return Lookup(False, key=key)
        synced = yield _Sync()
        if isinstance(synced, _Failure):
            self.emit("error", key, f"index sync: {synced.error}")
        neighbours = self._search(unit, partition, key)
        if neighbours is None:
            self._stats.add(misses=1)
            return Lookup(False, key=key)
        skip = (unusable,) if unusable else ()
        return (
            yield from self._neighbour_steps(
                neighbours, text=text, unit=unit, partition=partition, key=key, skip=skip,
                decode=decode,
            )
        )  # fmt: skip

    def _neighbour_steps(
        self,
        neighbours: list[tuple[str, float]],
        *,
        text: str,
        unit: FloatArray,
        partition: str,
        key: str,
        skip: tuple[str, ...],
        decode: Decode | None,
    ) -> _Steps:
        """The first neighbour above the threshold that the guard and ``decode`` accept."""
        rejected: list[str] = []
        for cand_key, score in neighbours:
            if score < self.threshold:
                break
            if cand_key in skip:
                continue
            cand = yield _Get(cand_key)
            if isinstance(cand, _Failure):
                self.emit("error", cand_key, f"backend: {cand.error}")
                break
            if cand is None:
                self.index.remove(cand_key)  # expired or evicted, maybe by another process
                continue
            verdict = self.guard(text, cand.text) if self.guard is not None else None
            if verdict is not None and not verdict.accepted:
                rejected.append(cand_key)
                self._stats.add(rejected=1)
                self.emit("rejected", cand_key, f"{verdict.reason} (similarity {score:.3f})")
                continue
            ok, value = self._decode(cand, decode)
            if ok:
                self._stats.add(hits=1, semantic_hits=1)
                return Lookup(True, value, key, cand_key, score, True, unit.tobytes(), partition)
        self._stats.add(misses=1)
        return Lookup(
            False, key=key, vector=unit.tobytes(), partition=partition, rejected=tuple(rejected)
        )

    def _prepare_steps(self, request: CacheRequest) -> _Steps:
        slot = self.temperature_policy.slot(request.temperature)
        if slot is None:
            return Lookup(hit=False)
        key = request.exact_key(slot)
        if not self.semantic or slot != 0:
            return Lookup(False, key=key)
        vector = yield _Embed(request.normalised_text())
        if isinstance(vector, _Failure):
            self.emit("error", key, f"embedding: {vector.error}")
            return Lookup(False, key=key)
        unit = self._unit(vector, key)
        if unit is None:
            return Lookup(False, key=key)
        partition = request.partition(self.context_policy)
        return Lookup(False, key=key, vector=unit.tobytes(), partition=partition)

    # -- vectors: a wrong dimension or a corrupt vector is an error event, never a raise --

    def _unit(self, vector: Any, key: str) -> FloatArray | None:
        """The unit form of a fresh embedding, or ``None`` (and an error) if it cannot fit.

        The first embedding fixes the index's dimension, so vectors other writers stored
        with an older embedding model are the ones skipped (see :meth:`_index_add`).
        """
        try:
            unit = as_unit_vector(vector)
            self.index.pin_dim(int(unit.shape[0]))
        except (ValueError, TypeError) as exc:
            self.emit("error", key, f"embedding: {exc} (semantic lookup skipped)")
            return None
        return unit

    def _search(self, unit: FloatArray, partition: str, key: str) -> list[tuple[str, float]] | None:
        try:
            return self.index.search(unit, self.top_k, partition)
        except ConfigurationError as exc:  # the dimension, fixed by another thread meanwhile
            self.emit("error", key, f"embedding: {exc} (semantic lookup skipped)")
            return None

    def _index_add(self, items: Sequence[tuple[str, bytes, str]]) -> None:
        """Index ``(key, vector bytes, partition)`` rows; unusable ones are one error event."""
        skipped: list[str] = []
        for key, raw, partition in items:
            try:
                self.index.add(key, np.frombuffer(raw, dtype=np.float32), partition)
            except ValueError as exc:  # corrupt bytes or another dimension
                skipped.append(f"{key[:16]}: {exc}")
        if skipped:
            self.emit(
                "error",
                "",
                f"{len(skipped)} vector(s) not indexed (exact lookups only), e.g. {skipped[0]}",
            )

    # -- drivers ------------------------------------------------------------------------

    def _apply(self, changes: list[Change], cursor: int) -> None:
        # Fetched outside the lock (no I/O under it); adding a vector twice is harmless.
        with self._sync_lock:
            if cursor <= self._cursor:
                return
            self._cursor = cursor
        self._index_add([(c.key, c.vector, c.partition) for c in changes])

    def _do(self, op: _Op) -> Any:
        if isinstance(op, _Get):
            return self.backend.get(op.key, self.clock())
        if isinstance(op, _Embed):
            assert self.embed is not None or self.aembed is not None
            if self.embed is None:
                raise CacheError("this engine has only an async embedder; use alookup")
            return self.embed([op.text])[0]
        if self.backend.shared:
            self._apply(*self.backend.changes_since(self._cursor))
        return None

    async def _ado(self, op: _Op) -> Any:
        if isinstance(op, _Get):
            return await self.backend.aget(op.key, self.clock())
        if isinstance(op, _Embed):
            if self.aembed is not None:
                return (await self.aembed([op.text]))[0]
            assert self.embed is not None
            return (await asyncio.to_thread(self.embed, [op.text]))[0]
        if self.backend.shared:
            self._apply(*(await self.backend.achanges_since(self._cursor)))
        return None

    @staticmethod
    def _catch(op: _Op, exc: Exception) -> _Failure:
        if isinstance(op, _Embed) or isinstance(exc, CacheError):
            return _Failure(exc)
        raise exc

    def lookup(self, request: CacheRequest, decode: Decode | None = None) -> Lookup:
        """Exact lookup, then (if semantic) the nearest guarded neighbour.

        Args:
            request: the request.
            decode: turns the stored value into the caller's (see the module docstring);
                an entry it refuses is a miss.
        """
        return self._drive(self._steps(request, decode))

    def prepare(self, request: CacheRequest) -> Lookup:
        """A miss ``Lookup`` for storing without reading first (key and embedding only)."""
        return self._drive(self._prepare_steps(request))

    async def alookup(self, request: CacheRequest, decode: Decode | None = None) -> Lookup:
        """Async :meth:`lookup`, same logic."""
        return await self._adrive(self._steps(request, decode))

    async def aprepare(self, request: CacheRequest) -> Lookup:
        """Async :meth:`prepare`."""
        return await self._adrive(self._prepare_steps(request))

    def _drive(self, steps: _Steps) -> Lookup:
        try:
            op = next(steps)
            while True:
                try:
                    result = self._do(op)
                except Exception as exc:  # noqa: BLE001 - _catch re-raises all but cache/embed failures
                    result = self._catch(op, exc)
                op = steps.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _adrive(self, steps: _Steps) -> Lookup:
        try:
            op = next(steps)
            while True:
                try:
                    result = await self._ado(op)
                except Exception as exc:  # noqa: BLE001 - _catch re-raises all but cache/embed failures
                    result = self._catch(op, exc)
                op = steps.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # -- writes -------------------------------------------------------------------------

    def _record(
        self, request: CacheRequest, value: Any, lookup: Lookup, ttl: float | None
    ) -> Record | None:
        if lookup.key is None:
            return None
        try:
            payload = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            self.emit("error", lookup.key, f"value is not JSON-serialisable: {exc}")
            return None
        now = self.clock()
        return Record(
            key=lookup.key,
            payload=payload,
            partition=lookup.partition,
            text=request.normalised_text(),
            vector=lookup.vector,
            created_at=now,
            expires_at=None if ttl is None else now + ttl,
        )

    def _after_put(self, record: Record, evicted: list[str]) -> None:
        if record.vector is not None:
            self._index_add([(record.key, record.vector, record.partition)])
        for key in evicted:
            self.index.remove(key)
        self._stats.add(evictions=len(evicted))

    def _ttl(self, ttl: float | None) -> float | None:
        if ttl is not None and ttl <= 0:
            raise ConfigurationError("ttl", "must be > 0 seconds or None")
        return self.ttl if ttl is None else ttl

    def store(
        self, request: CacheRequest, value: Any, lookup: Lookup, ttl: float | None = None
    ) -> None:
        """Store ``value`` (JSON-serialisable) for the request a miss ``lookup`` was for.

        Args:
            request: the request.
            value: the value, JSON-serialisable.
            lookup: the miss returned by :meth:`lookup` or :meth:`prepare`.
            ttl: this entry's time to live (default: the engine's ``ttl``).
        """
        record = self._record(request, value, lookup, self._ttl(ttl))
        if record is None:
            return
        try:
            evicted = self.backend.put(record, self.clock())
        except CacheError as exc:
            self.emit("error", record.key, f"backend: {exc}")
            return
        self._after_put(record, evicted)

    async def astore(
        self, request: CacheRequest, value: Any, lookup: Lookup, ttl: float | None = None
    ) -> None:
        """Async :meth:`store`."""
        record = self._record(request, value, lookup, self._ttl(ttl))
        if record is None:
            return
        try:
            evicted = await self.backend.aput(record, self.clock())
        except CacheError as exc:
            self.emit("error", record.key, f"backend: {exc}")
            return
        self._after_put(record, evicted)

    def clear(self) -> None:
        """Remove every entry (and the vector index)."""
        self.backend.clear()
        self.index.clear()

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        await self.backend.aclear()
        self.index.clear()
