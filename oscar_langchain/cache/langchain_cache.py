"""``OscarCache``: the cache engine as a LangChain ``BaseCache`` for ``set_llm_cache``.

LangChain calls ``lookup(prompt, llm_string)`` with the prompt serialised (for chat
models, a JSON list of messages) and ``llm_string`` describing the model and its
parameters. ``OscarCache`` revives message lists, so a semantic cache matches on the
last message with the system prompt and earlier turns as exact context (see
:mod:`oscar_langchain.cache.core`), and reads ``temperature`` from ``llm_string`` for the
temperature policy.

Example:
    >>> from langchain_core.outputs import Generation
    >>> cache = OscarCache()
    >>> cache.update("2+2?", "fake-llm", [Generation(text="4")])
    >>> cache.lookup("2+2?", "fake-llm")
    [Generation(text='4')]
    >>> cache.lookup("2+3?", "fake-llm") is None
    True
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage
from langchain_core.outputs import Generation

from oscar_langchain.cache.adapters import (
    Turn,
    UnserialisableValueError,
    decode_value,
    encode_value,
    message_turns,
    request_from_turns,
    serialised_turns,
)
from oscar_langchain.cache.core import CacheRequest
from oscar_langchain.cache.engine import CacheEngine, Lookup

__all__ = ["OscarCache"]

_TEMPERATURE = re.compile(r"""['"]temperature['"]\s*[,:]\s*([0-9.]+)""")


def _turns(prompt: str) -> list[Turn] | None:
    """The turns of a chat prompt (a JSON message list), or ``None`` for a plain prompt."""
    if not prompt.startswith("["):
        return None
    try:
        data = json.loads(prompt)
    except ValueError:
        return None
    turns = serialised_turns(data)
    if turns is not None:
        return turns
    try:
        revived = decode_value(data)
    except (ValueError, TypeError, KeyError, NotImplementedError):
        return None
    if isinstance(revived, list) and revived and all(isinstance(m, BaseMessage) for m in revived):
        return message_turns(revived)
    return None


class OscarCache(BaseCache):
    """LangChain LLM cache on oscar's engine: exact or semantic, any backend.

    Args:
        engine: the engine to use (default: exact, in memory).
        embeddings: shortcut for a semantic engine on these embeddings (ignored when
            ``engine`` is given).
        namespace: keys never cross namespaces.
    """

    def __init__(
        self,
        engine: CacheEngine | None = None,
        *,
        embeddings: Embeddings | None = None,
        namespace: str = "default",
    ) -> None:
        if engine is None:
            engine = CacheEngine(
                embed=embeddings.embed_documents if embeddings is not None else None,
                aembed=embeddings.aembed_documents if embeddings is not None else None,
            )
        self.engine = engine
        self.namespace = namespace

    def _request(self, prompt: str, llm_string: str) -> CacheRequest:
        match = _TEMPERATURE.search(llm_string)
        params = {"temperature": float(match.group(1))} if match else {}
        turns = _turns(prompt)
        if turns is not None:
            return request_from_turns(turns, llm_string, params, self.namespace)
        return CacheRequest(prompt, llm_string, params, namespace=self.namespace)

    def _result(self, lookup: Lookup) -> RETURN_VAL_TYPE | None:
        if not lookup.hit or not isinstance(lookup.value, list):
            return None
        try:
            generations = [decode_value(g) for g in lookup.value]
        except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
            self.engine.emit("error", lookup.matched_key or "", f"cannot revive entry: {exc}")
            return None
        if not all(isinstance(g, Generation) for g in generations):
            self.engine.emit("error", lookup.matched_key or "", "entry holds no generations")
            return None
        return generations

    def _payload(self, return_val: Sequence[Any], key: str) -> list[Any] | None:
        try:
            return [encode_value(g) for g in return_val]
        except UnserialisableValueError as exc:
            self.engine.emit("error", key, str(exc))
            return None

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Cached generations for this prompt and model, or ``None``."""
        return self._result(self.engine.lookup(self._request(prompt, llm_string)))

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store generations (the write re-derives key and embedding)."""
        request = self._request(prompt, llm_string)
        lookup = self.engine.prepare(request)
        payload = self._payload(return_val, lookup.key or "")
        if payload is not None:
            self.engine.store(request, payload, lookup)

    def clear(self, **kwargs: Any) -> None:
        """Remove every entry."""
        self.engine.clear()

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Async :meth:`lookup`."""
        return self._result(await self.engine.alookup(self._request(prompt, llm_string)))

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Async :meth:`update`."""
        request = self._request(prompt, llm_string)
        lookup = await self.engine.aprepare(request)
        payload = self._payload(return_val, lookup.key or "")
        if payload is not None:
            await self.engine.astore(request, payload, lookup)

    async def aclear(self, **kwargs: Any) -> None:
        """Async :meth:`clear`."""
        await self.engine.aclear()

    def stats(self) -> dict[str, float]:
        """The engine's counters."""
        return self.engine.stats()
