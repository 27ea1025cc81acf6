"""``python -m oscar_langchain.demo``: the demo pipeline on embedded defaults, no API keys.

Local model servers (llama-server + Gemma 3 270M) start on first use and stop at exit.
``--no-local`` runs the sections without a model server.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from importlib import resources
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel

from oscar_langchain.demo import (
    cache,
    callbacks,
    failover,
    foundation,
    local,
    retriever,
    router,
    splitter,
)
from oscar_langchain.demo.context import DemoContext
from oscar_langchain.embeddings import OfflineEmbeddings

SECTIONS = [foundation, local, callbacks, splitter, retriever, cache, router, failover]


def load_context() -> DemoContext:
    """The bundled demo corpus and questions, with the offline embeddings."""
    text = resources.files("oscar_langchain").joinpath("data/demo_corpus.json").read_text("utf-8")
    data = json.loads(text)
    corpus = [
        Document(page_content=d["text"], metadata={"id": d["id"], "title": d["title"]}, id=d["id"])
        for d in data["documents"]
    ]
    return DemoContext(
        corpus=corpus, questions=list(data["questions"]), embeddings=OfflineEmbeddings()
    )


class LocalServers:
    """Local model servers started on first use (``chat_model(i)``) and stopped at exit.

    Server 0 has a 2,048-token window and server 1 an 8,192-token one, so that the router
    demo's long prompt really fits only the "large" route.
    """

    CTX_SIZES = (2048, 8192)

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._servers: dict[int, Any] = {}

    def chat_model(self, index: int = 0, **kwargs: Any) -> BaseChatModel:
        """A ChatOpenAI on local server ``index``, starting it if needed."""
        if index not in self._servers:
            from oscar_langchain.local import LocalModelServer, LocalServerSettings

            ctx_size = self.CTX_SIZES[min(index, len(self.CTX_SIZES) - 1)]
            print(
                f"(starting local model server {index}: llama-server + Gemma 3 270M, "
                f"{ctx_size}-token window)"
            )
            settings = LocalServerSettings(ctx_size=ctx_size)
            self._servers[index] = self._stack.enter_context(LocalModelServer(settings=settings))
        model: BaseChatModel = self._servers[index].chat_model(**kwargs)
        return model

    def kill(self, index: int) -> None:
        """Stop local server ``index`` (the failover demo kills one)."""
        server = self._servers.get(index)
        if server is not None:
            server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run every demo section in order."""
    parser = argparse.ArgumentParser(prog="python -m oscar_langchain.demo")
    parser.add_argument("--no-local", action="store_true", help="run without local model servers")
    args = parser.parse_args(argv)
    ctx = load_context()
    with ExitStack() as stack:
        if not args.no_local:
            servers = LocalServers(stack)
            ctx.chat_model = servers.chat_model
            ctx.kill_server = servers.kill
        for section in SECTIONS:
            section.run(ctx)
            ctx.out("")
    ctx.out("demo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
