import oscar_langchain

EXPECTED_ALL = [
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


def test_all_imports() -> None:
    assert sorted(oscar_langchain.__all__) == sorted(EXPECTED_ALL)
    for name in oscar_langchain.__all__:
        assert hasattr(oscar_langchain, name), name
