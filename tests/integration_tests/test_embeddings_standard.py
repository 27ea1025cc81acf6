from __future__ import annotations

from langchain_tests.integration_tests import EmbeddingsIntegrationTests

from oscar_langchain.embeddings import OfflineEmbeddings


class TestOfflineEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[OfflineEmbeddings]:
        return OfflineEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, object]:
        return {}
