from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from langchain_tests.unit_tests import EmbeddingsUnitTests

from oscar_langchain.embeddings import OfflineEmbeddings
from oscar_langchain.errors import ConfigurationError


class TestOfflineEmbeddingsStandard(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[OfflineEmbeddings]:
        return OfflineEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, object]:
        return {"n_features": 512}


def test_unit_vectors_and_similarity() -> None:
    emb = OfflineEmbeddings()
    m = emb.embed_array(["reset my password", "how to reset a password", "capital of France", ""])
    assert m.dtype == np.float32 and m.flags["C_CONTIGUOUS"]
    assert np.allclose(np.linalg.norm(m[:3], axis=1), 1.0, atol=1e-5)
    assert not m[3].any()
    sims = m @ m.T
    assert sims[0, 1] > sims[0, 2]
    assert emb.embed_array([]).shape == (0, 1024)


def test_deterministic_across_processes() -> None:
    code = (
        "from oscar_langchain.embeddings import OfflineEmbeddings;"
        "print(OfflineEmbeddings(n_features=64).embed_query('determinism across processes'))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(outs) == 1
    assert (
        str(OfflineEmbeddings(n_features=64).embed_query("determinism across processes"))
        in outs.pop()
    )


async def test_async_matches_sync() -> None:
    emb = OfflineEmbeddings(n_features=128)
    assert await emb.aembed_query("x y") == emb.embed_query("x y")
    assert await emb.aembed_documents(["a", "b"]) == emb.embed_documents(["a", "b"])


def test_bad_input() -> None:
    emb = OfflineEmbeddings()
    with pytest.raises(ConfigurationError, match="texts"):
        emb.embed_documents("not a list")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"texts\[1\]"):
        emb.embed_documents(["ok", None])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="text"):
        emb.embed_query(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="power of two"):
        OfflineEmbeddings(n_features=1000)
    with pytest.raises(ValueError, match="extra"):
        OfflineEmbeddings(model="x")  # type: ignore[call-arg]
