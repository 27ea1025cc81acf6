"""Caching: exact and semantic, memory/SQLite/Redis, guarded against false hits.

* :class:`CachedRunnable` wraps any Runnable (invoke, batch, stream, single-flight).
* :class:`OscarCache` is a LangChain ``BaseCache`` for ``set_llm_cache``.
* :class:`CacheEngine` is the pure core both use; backends store JSON and float32 bytes
  and evict by :class:`LRU` (default) or :class:`LFU`.
* :class:`OutputTypes` lists the pydantic classes (structured outputs) a cache may store
  and revive; ``CachedRunnable(output_types=[...])`` builds one.
"""

from oscar_langchain.cache.backends import CacheBackend, MemoryBackend, Record, SQLiteBackend
from oscar_langchain.cache.core import CacheRequest, CacheStats, ContextPolicy, TemperaturePolicy
from oscar_langchain.cache.engine import CacheEngine, CacheEvent, Lookup
from oscar_langchain.cache.eviction import LFU, LRU, EvictionPolicy
from oscar_langchain.cache.guard import AllOf, CallableGuard, Guard, GuardVerdict, RuleGuard
from oscar_langchain.cache.langchain_cache import OscarCache
from oscar_langchain.cache.output_types import OutputTypes
from oscar_langchain.cache.redis_backend import RedisBackend
from oscar_langchain.cache.runnable import CachedRunnable, semantic_engine
from oscar_langchain.cache.singleflight import SingleFlight
from oscar_langchain.cache.vector_index import VectorIndex

__all__ = [
    "LFU",
    "LRU",
    "AllOf",
    "CacheBackend",
    "CacheEngine",
    "CacheEvent",
    "CacheRequest",
    "CacheStats",
    "CachedRunnable",
    "CallableGuard",
    "ContextPolicy",
    "EvictionPolicy",
    "Guard",
    "GuardVerdict",
    "Lookup",
    "MemoryBackend",
    "OscarCache",
    "OutputTypes",
    "Record",
    "RedisBackend",
    "RuleGuard",
    "SQLiteBackend",
    "SingleFlight",
    "TemperaturePolicy",
    "VectorIndex",
    "semantic_engine",
]
