"""Consistency checks for a BM25 index directory being loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from oscar_langchain.errors import RetrievalError

__all__ = ["ARRAYS", "check_consistent"]

ARRAYS = (
    "doc_len",
    "fwd_indptr",
    "fwd_terms",
    "fwd_tfs",
    "csc_indptr",
    "csc_rows",
    "csc_tf",
    "csc_weights",
)


def check_consistent(
    directory: Path, a: dict[str, np.ndarray[Any, Any]], terms: Any, ids: Any
) -> None:
    def bad(problem: str) -> RetrievalError:
        return RetrievalError(f"corrupt index at {directory}: {problem}")

    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise bad("vocab.json is not a list of strings")
    if not isinstance(ids, list) or not all(isinstance(d, str) for d in ids):
        raise bad("ids.json is not a list of strings")
    n, nnz = len(ids), len(a["fwd_terms"])
    ip = a["fwd_indptr"]
    if len(a["doc_len"]) != n or len(ip) != n + 1 or ip[0] != 0 or ip[-1] != nnz:
        raise bad("document arrays disagree with ids.json")
    if len(a["fwd_tfs"]) != nnz or (nnz and int(a["fwd_terms"].max()) >= len(terms)):
        raise bad("forward postings are inconsistent")
    if np.any(np.diff(ip) < 0):
        raise bad("forward index pointers are not monotonic")
    cp = a["csc_indptr"]
    if n and (len(cp) != len(terms) + 1 or cp[-1] != nnz or np.any(np.diff(cp) < 0)):
        raise bad("term-major postings disagree with the vocabulary")
    if any(len(a[k]) != (nnz if n else 0) for k in ("csc_rows", "csc_tf", "csc_weights")):
        raise bad("term-major arrays have the wrong length")
    if n and nnz and int(a["csc_rows"].max()) >= n:
        raise bad("term-major postings point past the last document")
