"""What every demo section receives: shared inputs and the local model, if any."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel

__all__ = ["ANSWER_PROMPT", "DemoContext"]

ANSWER_PROMPT = "{context}\n\nQuestion: {question}\nAnswer in one sentence:"
"""The demo's RAG prompt (``str.format`` fields ``context`` and ``question``): one user
turn, the passages first and nothing before them. Gemma's chat template has no system
role, and the 270M model tends to repeat the start of its prompt: with an instruction or a
"Context:" label first it repeats that; this way it repeats the best passage."""


@dataclass
class DemoContext:
    """Inputs shared by the demo's sections.

    Attributes:
        corpus: the demo's documents.
        questions: questions about the corpus.
        embeddings: the embeddings every section uses (default: oscar's offline ones).
        callbacks: handlers to pass in ``config["callbacks"]`` (tracing, stats, errors).
        chat_model: ``chat_model(i, **kwargs)`` gives a chat model on local server ``i``
            (0, 1, 2); ``None`` when no local model runs (e.g. in unit tests, which pass fakes).
        kill_server: ``kill_server(i)`` stops local server ``i`` (the failover demo).
        out: where sections print.
    """

    corpus: list[Document]
    questions: list[str]
    embeddings: Embeddings
    callbacks: list[BaseCallbackHandler] = field(default_factory=list)
    chat_model: Callable[..., BaseChatModel] | None = None
    kill_server: Callable[[int], None] | None = None
    out: Callable[[str], None] = print
    extras: dict[str, Any] = field(default_factory=dict)
