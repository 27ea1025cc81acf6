"""oscar-langchain: production-grade LLM middleware for LangChain."""

from oscar_langchain._runnable import OscarRunnable, annotate_run, child_config
from oscar_langchain.breaker_store import InMemoryBreakerStore, RedisBreakerStore
from oscar_langchain.cache import CachedRunnable, OscarCache
from oscar_langchain.callbacks import (
    ErrorCallbackHandler,
    OscarTracer,
    PerformanceCallbackHandler,
    oscar_callbacks,
    trace_block,
    trace_performance,
)
from oscar_langchain.circuit_breaker import (
    BreakerConfig,
    BreakerSnapshot,
    CircuitBreaker,
    CircuitState,
)
from oscar_langchain.embeddings import OfflineEmbeddings
from oscar_langchain.errors import (
    AttemptRecord,
    CacheError,
    CircuitOpenError,
    ConfigurationError,
    EnsembleError,
    ErrorClassification,
    ErrorKind,
    FailoverError,
    OscarError,
    RetrievalError,
    RouterError,
    SafeResult,
    TokenizerError,
    UnknownModelError,
    asafe_execute,
    classify_error,
    safe_execute,
)
from oscar_langchain.failover import FailoverRunnable, with_failover
from oscar_langchain.failover_plan import FailoverPlan
from oscar_langchain.failover_policy import RetryPolicy
from oscar_langchain.local import LocalModelServer, LocalServerError, LocalServerSettings
from oscar_langchain.models import ModelInfo, ModelRegistry, default_registry, estimate_cost
from oscar_langchain.retrieval import BM25Index, HybridRetriever, QueryOptimizer
from oscar_langchain.routing import Route, RouteDecision
from oscar_langchain.routing.router import RouterRunnable
from oscar_langchain.splitter import SemanticTextSplitter
from oscar_langchain.tokens import TokenCounter, encoding_for, get_encoding

__version__ = "0.1.0"

__all__ = [
    "AttemptRecord",
    "BM25Index",
    "BreakerConfig",
    "BreakerSnapshot",
    "CacheError",
    "CachedRunnable",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ConfigurationError",
    "EnsembleError",
    "ErrorCallbackHandler",
    "ErrorClassification",
    "ErrorKind",
    "FailoverError",
    "FailoverPlan",
    "FailoverRunnable",
    "HybridRetriever",
    "InMemoryBreakerStore",
    "LocalModelServer",
    "LocalServerError",
    "LocalServerSettings",
    "ModelInfo",
    "ModelRegistry",
    "OfflineEmbeddings",
    "OscarCache",
    "OscarError",
    "OscarRunnable",
    "OscarTracer",
    "PerformanceCallbackHandler",
    "QueryOptimizer",
    "RedisBreakerStore",
    "RetrievalError",
    "RetryPolicy",
    "Route",
    "RouteDecision",
    "RouterError",
    "RouterRunnable",
    "SafeResult",
    "SemanticTextSplitter",
    "TokenCounter",
    "TokenizerError",
    "UnknownModelError",
    "__version__",
    "annotate_run",
    "asafe_execute",
    "child_config",
    "classify_error",
    "default_registry",
    "encoding_for",
    "estimate_cost",
    "get_encoding",
    "oscar_callbacks",
    "safe_execute",
    "trace_block",
    "trace_performance",
    "with_failover",
]
