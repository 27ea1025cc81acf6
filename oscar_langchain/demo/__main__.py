"""``python -m oscar_langchain.demo``: the demo pipeline on embedded defaults, no API keys."""

from __future__ import annotations

import json
import sys
from importlib import resources

from langchain_core.documents import Document

from oscar_langchain.demo import foundation
from oscar_langchain.demo.context import DemoContext
from oscar_langchain.embeddings import OfflineEmbeddings


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


def main() -> int:
    """Run every demo section in order."""
    ctx = load_context()
    foundation.run(ctx)
    ctx.out("demo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
