"""oscar-langchain: production-grade LLM middleware for LangChain."""

from oscar_langchain._runnable import OscarRunnable, annotate_run, child_config
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
    "OscarError",
    "OscarRunnable",
    "RetrievalError",
    "RouterError",
    "SafeResult",
    "TokenizerError",
    "UnknownModelError",
    "__version__",
    "annotate_run",
    "asafe_execute",
    "child_config",
    "classify_error",
    "safe_execute",
]
