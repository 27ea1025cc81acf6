"""oscar-langchain: production-grade LLM middleware for LangChain."""

from oscar_langchain._runnable import OscarRunnable, annotate_run, child_config
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
from oscar_langchain.models import ModelInfo, ModelRegistry, default_registry, estimate_cost
from oscar_langchain.tokens import TokenCounter, encoding_for, get_encoding

__version__ = "0.1.0"

__all__ = [
    "AttemptRecord",
    "CacheError",
    "CircuitOpenError",
    "ConfigurationError",
    "EnsembleError",
    "ErrorClassification",
    "ErrorKind",
    "FailoverError",
    "ModelInfo",
    "ModelRegistry",
    "OfflineEmbeddings",
    "OscarError",
    "OscarRunnable",
    "RetrievalError",
    "RouterError",
    "SafeResult",
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
    "safe_execute",
]
