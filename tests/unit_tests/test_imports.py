import oscar_langchain

EXPECTED_ALL = [
    "AttemptRecord",
    "BreakerConfig",
    "BreakerSnapshot",
    "CacheError",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ConfigurationError",
    "EnsembleError",
    "ErrorClassification",
    "ErrorKind",
    "FailoverError",
    "FailoverRunnable",
    "InMemoryBreakerStore",
    "LocalModelServer",
    "LocalServerError",
    "LocalServerSettings",
    "ModelInfo",
    "ModelRegistry",
    "OfflineEmbeddings",
    "OscarError",
    "OscarRunnable",
    "RedisBreakerStore",
    "RetrievalError",
    "RetryPolicy",
    "Route",
    "RouteDecision",
    "RouterError",
    "RouterRunnable",
    "SafeResult",
    "TokenCounter",
    "TokenizerError",
    "UnknownModelError",
    "annotate_run",
    "asafe_execute",
    "child_config",
    "classify_error",
    "default_registry",
    "encoding_for",
    "estimate_cost",
    "get_encoding",
    "safe_execute",
    "with_failover",
    "__version__",
]


def test_all_imports() -> None:
    assert sorted(oscar_langchain.__all__) == sorted(EXPECTED_ALL)
    for name in oscar_langchain.__all__:
        assert hasattr(oscar_langchain, name), name
