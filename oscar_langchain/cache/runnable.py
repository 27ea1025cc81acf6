"""``CachedRunnable``: exact or semantic caching in front of any Runnable.

Hits are answered from the cache; misses call the wrapped runnable (with the child
config, so its run nests under the cache's run) and are stored. Call-time keyword
arguments (``invoke(x, stop=[...])``, ``.bind(stop=[...])``) are passed on to the
wrapped runnable and are part of the key. Streams replay the
cached chunks on a hit and, on a miss, stream through and store the assembled result.
Concurrent identical misses make one upstream call (single-flight, sync and async).
The temperature policy sees the temperature of every model the runnable may call, not
only a bare model's: a chain, a binding, a retry or fallback wrapper, a router or a
configurable model (resolved with the call's config) holding a sampling model samples
(see :func:`~oscar_langchain.cache.identity.sampling_temperature`).
Each run is annotated with ``oscar.cache.hit``, ``oscar.cache.semantic``,
``oscar.cache.similarity``, ``oscar.cache.key`` and ``oscar.cache.shared``.

**Structured outputs.** Messages, documents, strings and JSON data (the dicts of
``JsonOutputParser``, or of ``with_structured_output`` on a JSON schema or a
``TypedDict``) are cached as they are. Pydantic models (``with_structured_output(Model)``,
``PydanticOutputParser``) are cached only for the classes given in ``output_types``:
stored as JSON with a type tag, revived by validating into the registered class (see
:mod:`~oscar_langchain.cache.output_types`); other models pass through uncached, with an
error event that names the fix. An entry whose class is not registered here, or that no
longer validates (the schema changed), is a miss counted in ``stats()["stale"]``; the
recomputed answer overwrites it. Keys hold the JSON schemas of the structured outputs
the runnable requests and of ``output_types``, so two output schemas never share
entries, ``model_id`` or not.

Example:
    >>> from langchain_core.language_models import FakeListChatModel
    >>> model = FakeListChatModel(responses=["Paris", "Lyon"])
    >>> cached = CachedRunnable(runnable=model)
    >>> cached.invoke("Capital of France?").content, cached.invoke("Capital of France?").content
    ('Paris', 'Paris')
    >>> cached.stats()["hits"]
    1
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from oscar_langchain._runnable import OscarRunnable, aannotate_run, annotate_run, child_config
from oscar_langchain.cache.adapters import configurable_params, request_from_input
from oscar_langchain.cache.codec import (
    UnserialisableValueError,
    assemble_chunks,
    decode_value,
    encode_value,
    to_chunk,
)
from oscar_langchain.cache.core import CacheRequest
from oscar_langchain.cache.engine import CacheEngine, Lookup
from oscar_langchain.cache.identity import (
    SamplingTemperature,
    model_identity,
    output_schemas,
    sampling_temperature,
)
from oscar_langchain.cache.output_types import OutputTypes, schema_digest
from oscar_langchain.cache.singleflight import SingleFlight
from oscar_langchain.errors import CacheError

__all__ = ["CachedRunnable", "semantic_engine"]


def semantic_engine(embeddings: Embeddings, **kwargs: Any) -> CacheEngine:
    """A :class:`CacheEngine` embedding with any LangChain ``Embeddings``.

    Args:
        embeddings: the embedding model (e.g. ``OfflineEmbeddings()``).
        **kwargs: passed to :class:`CacheEngine` (backend, threshold, ttl, guard...).
    """
    return CacheEngine(
        embed=embeddings.embed_documents, aembed=embeddings.aembed_documents, **kwargs
    )


_Result = tuple[Any, Lookup]


class CachedRunnable(OscarRunnable[Any, Any]):
    """Caches the outputs of ``runnable`` (chat models, chains, retrievers...).

    Structured outputs are cached for the pydantic classes listed in ``output_types``
    (the classes given to ``with_structured_output`` or ``PydanticOutputParser``).

    Example:
        >>> from langchain_core.language_models import FakeListChatModel
        >>> from langchain_core.output_parsers import PydanticOutputParser
        >>> from pydantic import BaseModel
        >>> class City(BaseModel):
        ...     name: str
        ...     country: str
        >>> model = FakeListChatModel(responses=['{"name": "Paris", "country": "France"}'])
        >>> chain = model | PydanticOutputParser(pydantic_object=City)
        >>> cached = CachedRunnable(runnable=chain, output_types=[City])
        >>> cached.invoke("Capital of France?")
        City(name='Paris', country='France')
        >>> hit = cached.invoke("Capital of France?")
        >>> type(hit).__name__, cached.stats()["hits"]
        ('City', 1)
        >>> uncached = CachedRunnable(runnable=chain)  # City not registered: not stored
        >>> _ = uncached.invoke("Capital of France?"), uncached.invoke("Capital of France?")
        >>> uncached.stats()["hits"], uncached.stats()["size"]
        (0, 0)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    runnable: Runnable[Any, Any]
    """The runnable whose outputs are cached."""
    cache: CacheEngine = Field(default_factory=CacheEngine)
    """The engine (backend, semantic settings, policies); exact in-memory by default."""
    namespace: str = "default"
    """Keys never cross namespaces (tenants, applications)."""
    model_id: str | None = None
    """Identity used in keys; default: the model's type and invocation parameters."""
    output_types: tuple[type[BaseModel], ...] = ()
    """The pydantic model classes whose instances may be cached (structured outputs, as
    given to ``with_structured_output`` or ``PydanticOutputParser``); other models are
    passed through uncached. See :mod:`oscar_langchain.cache.output_types`."""

    _flight: SingleFlight = PrivateAttr(default_factory=SingleFlight)
    _types: OutputTypes = PrivateAttr(default_factory=OutputTypes)
    _identity: tuple[str, dict[str, Any]] | None = PrivateAttr(default=None)
    _temperature: SamplingTemperature | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        """Build the output-type registry (``ConfigurationError`` names the field)."""
        super().model_post_init(context)
        self._types = OutputTypes(self.output_types)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Not serialisable: the engine holds live connections."""
        return False

    def stats(self) -> dict[str, float]:
        """The engine's counters (see :meth:`CacheEngine.stats`)."""
        return self.cache.stats()

    # -- pure-ish helpers shared by every path ------------------------------------------

    def _request(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        call_kwargs: Mapping[str, Any] | None = None,
    ) -> CacheRequest:
        """The request's key material.

        Its params: the model's identity, digests of the structured output schemas the
        runnable holds and of those of ``output_types`` (with ``model_id`` too),
        ``config["configurable"]`` (see ``configurable_params``) and ``call_kwargs``
        (``stop=...``).
        """
        if self._identity is None:
            model, params = model_identity(self.runnable)
            # Each only when there is one, so other keys are those of earlier versions.
            found, registered = output_schemas(self.runnable), self._types.schemas()
            if found:
                params = {**params, "output_schema": schema_digest(found)}
            if registered:
                params = {**params, "output_types": schema_digest(registered)}
            self._identity = model, params
        model, params = self._identity
        params = {**params, **configurable_params(config), **(call_kwargs or {})}
        if "temperature" not in params:
            temperature = self._sampling(config)
            if temperature is not None and temperature > 0:
                params["temperature"] = temperature
        return request_from_input(input, self.model_id or model, params, self.namespace)

    def _sampling(self, config: RunnableConfig | None) -> float | None:
        """The highest temperature of the models the wrapped runnable calls (with config).

        A chain's identity is a fingerprint with no parameters, so the temperature policy
        would never see that a model inside it samples; a sampling temperature found here
        joins the request's params (a deterministic chain's keys stay as they were).
        """
        if self._temperature is not None:
            return self._temperature.temperature
        found = sampling_temperature(self.runnable, config)
        if not found.per_call:
            self._temperature = found
        return found.temperature

    def _single_flight(self, request: CacheRequest) -> bool:
        temperature = request.temperature
        sampling = temperature is not None and temperature > 0
        return not sampling or self.cache.temperature_policy.mode == "cache"

    def _revive(self, stored: Any) -> tuple[Any, list[Any] | None]:
        """The engine's ``decode``: a stored entry -> ``(value, chunks)``.

        A structured output of an unregistered class or that no longer validates raises
        ``StaleEntryError``, anything else unrevivable ``CacheError``: both are misses.
        """
        if not isinstance(stored, dict) or "value" not in stored:
            raise CacheError("entry holds no value")
        try:
            value = decode_value(stored["value"], self._types)
            raw_chunks = stored.get("chunks")
            chunks = [decode_value(c, self._types) for c in raw_chunks] if raw_chunks else None
        except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
            raise CacheError(str(exc)) from exc
        return value, chunks

    def _lookup(self, request: CacheRequest) -> tuple[Lookup, Any, list[Any] | None]:
        lookup = self.cache.lookup(request, self._revive)
        value, chunks = lookup.value if lookup.hit else (None, None)
        return lookup, value, chunks

    async def _alookup(self, request: CacheRequest) -> tuple[Lookup, Any, list[Any] | None]:
        lookup = await self.cache.alookup(request, self._revive)
        value, chunks = lookup.value if lookup.hit else (None, None)
        return lookup, value, chunks

    def _payload(self, value: Any, chunks: list[Any] | None, lookup: Lookup) -> Any:
        try:
            return {
                "value": encode_value(value, self._types),
                "chunks": (
                    [encode_value(c, self._types) for c in chunks] if chunks is not None else None
                ),
            }
        except UnserialisableValueError as exc:
            self.cache.emit("error", lookup.key or "", str(exc))
            return None

    @staticmethod
    def _attributes(lookup: Lookup, hit: bool, shared: bool = False) -> dict[str, Any]:
        return {
            "oscar.cache.hit": hit,
            "oscar.cache.semantic": hit and lookup.semantic,
            "oscar.cache.similarity": lookup.similarity if hit else None,
            "oscar.cache.key": lookup.matched_key if hit else lookup.key,
            "oscar.cache.shared": shared,
            "oscar.cache.bypassed": lookup.bypassed,
        }

    # -- invoke / ainvoke ---------------------------------------------------------------

    def _lookup_or_call(
        self,
        input: Any,
        request: CacheRequest,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        kwargs: Mapping[str, Any],
    ) -> tuple[Any, Lookup, bool]:
        lookup, value, _ = self._lookup(request)
        if lookup.hit:
            return value, lookup, True
        value = self.runnable.invoke(input, child_config(config, run_manager), **kwargs)
        payload = self._payload(value, None, lookup)
        if payload is not None:
            self.cache.store(request, payload, lookup)
        return value, lookup, False

    async def _alookup_or_call(
        self,
        input: Any,
        request: CacheRequest,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        kwargs: Mapping[str, Any],
    ) -> tuple[Any, Lookup, bool]:
        lookup, value, _ = await self._alookup(request)
        if lookup.hit:
            return value, lookup, True
        value = await self.runnable.ainvoke(input, child_config(config, run_manager), **kwargs)
        payload = self._payload(value, None, lookup)
        if payload is not None:
            await self.cache.astore(request, payload, lookup)
        return value, lookup, False

    def _invoke(
        self,
        input: Any,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Any:
        request = self._request(input, config, call_kwargs=kwargs)

        def call() -> tuple[Any, Lookup, bool]:
            return self._lookup_or_call(input, request, run_manager, config, kwargs)

        if self._single_flight(request):
            (value, lookup, hit), shared = self._flight.do(request.exact_key(), call)
        else:
            (value, lookup, hit), shared = call(), False
        annotate_run(run_manager, self._attributes(lookup, hit or shared, shared))
        return value

    async def _ainvoke(
        self,
        input: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Any:
        request = self._request(input, config, call_kwargs=kwargs)

        async def call() -> tuple[Any, Lookup, bool]:
            return await self._alookup_or_call(input, request, run_manager, config, kwargs)

        if self._single_flight(request):
            (value, lookup, hit), shared = await self._flight.ado(request.exact_key(), call)
        else:
            (value, lookup, hit), shared = await call(), False
        await aannotate_run(run_manager, self._attributes(lookup, hit or shared, shared))
        return value

    # -- stream / astream ---------------------------------------------------------------

    def _stream(
        self,
        input: Any,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Iterator[Any]:
        request = self._request(input, config, call_kwargs=kwargs)
        lookup, value, chunks = self._lookup(request)
        annotate_run(run_manager, self._attributes(lookup, lookup.hit))
        if lookup.hit:
            yield from chunks if chunks else [to_chunk(value)]
            return
        seen: list[Any] = []
        for chunk in self.runnable.stream(input, child_config(config, run_manager), **kwargs):
            seen.append(chunk)
            yield chunk
        payload = self._payload(assemble_chunks(seen), seen, lookup)
        if payload is not None:
            self.cache.store(request, payload, lookup)

    async def _astream(
        self,
        input: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        request = self._request(input, config, call_kwargs=kwargs)
        lookup, value, chunks = await self._alookup(request)
        await aannotate_run(run_manager, self._attributes(lookup, lookup.hit))
        if lookup.hit:
            for chunk in chunks if chunks else [to_chunk(value)]:
                yield chunk
            return
        seen: list[Any] = []
        async for chunk in self.runnable.astream(
            input, child_config(config, run_manager), **kwargs
        ):
            seen.append(chunk)
            yield chunk
        payload = self._payload(assemble_chunks(seen), seen, lookup)
        if payload is not None:
            await self.cache.astore(request, payload, lookup)
