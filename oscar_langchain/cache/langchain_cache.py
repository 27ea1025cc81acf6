"""``OscarCache``: the cache engine as a LangChain ``BaseCache`` for ``set_llm_cache``.

LangChain calls ``lookup(prompt, llm_string)`` with the prompt serialised (for chat
models, a JSON list of messages) and ``llm_string`` describing the model and its
parameters. ``OscarCache`` revives message lists, so a semantic cache matches on the
last message with the system prompt and earlier turns as exact context (see
:mod:`oscar_langchain.cache.core`), and reads ``temperature`` from ``llm_string`` for the
temperature policy (:func:`llm_string_temperature`: a call's temperature overrides the
model's).

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

import ast
import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage
from langchain_core.outputs import Generation

from oscar_langchain.cache.adapters import Turn, message_turns, request_from_turns, serialised_turns
from oscar_langchain.cache.codec import UnserialisableValueError, decode_value, encode_value
from oscar_langchain.cache.core import CacheRequest
from oscar_langchain.cache.engine import CacheEngine, Lookup
from oscar_langchain.errors import CacheError

__all__ = ["OscarCache", "llm_string_temperature"]

_JSON = json.JSONDecoder()
_OBJECT_REPR = re.compile(r"<[^<>'\"]*>")  # <object object at 0x...>: not a literal
# A top-level ``('temperature', value)`` entry of a sorted params repr (after ``[`` or
# ``), ``), for a string that does not parse; nested dicts write ``'temperature': value``.
_TOP_LEVEL = re.compile(r"(?:\[|\), )\('temperature', (-?[0-9]+(?:\.[0-9]*)?(?:e[-+]?[0-9]+)?)\)")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _params_repr(text: str) -> dict[str, Any] | None:
    """``str(sorted(params.items()))`` read back (object reprs as ``None``), or ``None``."""
    try:
        items = ast.literal_eval(_OBJECT_REPR.sub("None", text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if not isinstance(items, list) or not all(
        isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str) for i in items
    ):
        return None
    return dict(items)


def _temperature_in(params: Mapping[str, Any]) -> float | None:
    """``params["temperature"]``, else ``params["model_kwargs"]["temperature"]``."""
    found = _number(params.get("temperature"))
    extra = params.get("model_kwargs")
    if found is None and isinstance(extra, Mapping):
        found = _number(extra.get("temperature"))
    return found


@functools.lru_cache(maxsize=256)  # one model's llm_string repeats on every call
def llm_string_temperature(llm_string: str) -> float | None:
    """The temperature a LangChain ``llm_string`` asks for (``None``: none given).

    langchain-core writes two forms: for a serialisable chat model, its ``dumpd`` JSON,
    ``"---"`` and the repr of the call's sorted ``(name, value)`` parameters; for other
    models and LLMs, the repr of the sorted invocation parameters (the call's
    included). Both are parsed, not searched: a call's temperature overrides the
    model's, a top-level one ``model_kwargs``'s, and text elsewhere that looks like a
    temperature (a stop sequence, a tool's schema) is never read. A string that does not
    parse (another cache's format) is read for a ``('temperature', number)`` entry of a
    list of pairs only.

    Example:
        >>> llm_string_temperature('{"kwargs": {"temperature": 0.0}}---[("temperature", 0.9)]')
        0.9
        >>> llm_string_temperature("[('stop', ['temperature: 1']), ('temperature', None)]") is None
        True
    """
    serialised: Any = None
    params_text = llm_string
    if llm_string.startswith("{"):
        try:
            serialised, end = _JSON.raw_decode(llm_string)
        except ValueError:
            serialised = None
        else:
            if end == len(llm_string):
                params_text = "[]"
            elif llm_string.startswith("---", end):
                params_text = llm_string[end + 3 :]
            else:
                serialised = None
    params = _params_repr(params_text)
    if params is None:
        match = _TOP_LEVEL.search(params_text)
        found = _number(float(match.group(1))) if match else None
    else:
        found = _number(params.get("temperature"))
    kwargs = serialised.get("kwargs") if isinstance(serialised, Mapping) else None
    if found is None and isinstance(kwargs, Mapping):
        found = _temperature_in(kwargs)
    if found is None and params is not None:
        found = _temperature_in(params)
    return found


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
    except (ValueError, TypeError, KeyError, NotImplementedError, CacheError):
        return None  # not a message list (CacheError: a structured output's shape)
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
        temperature = llm_string_temperature(llm_string)
        params = {"temperature": temperature} if temperature is not None else {}
        turns = _turns(prompt)
        if turns is not None:
            return request_from_turns(turns, llm_string, params, self.namespace)
        return CacheRequest(prompt, llm_string, params, namespace=self.namespace)

    @staticmethod
    def _revive(stored: Any) -> list[Generation]:
        """The engine's ``decode``: stored JSON -> generations (a refusal is a miss)."""
        if not isinstance(stored, list):
            raise CacheError("entry holds no generations")
        try:
            generations = [decode_value(g) for g in stored]
        except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
            raise CacheError(str(exc)) from exc
        if not all(isinstance(g, Generation) for g in generations):
            raise CacheError("entry holds no generations")
        return generations

    @staticmethod
    def _result(lookup: Lookup) -> RETURN_VAL_TYPE | None:
        return lookup.value if lookup.hit else None

    def _payload(self, return_val: Sequence[Any], key: str) -> list[Any] | None:
        try:
            return [encode_value(g) for g in return_val]
        except UnserialisableValueError as exc:
            self.engine.emit("error", key, str(exc))
            return None

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Cached generations for this prompt and model, or ``None``."""
        return self._result(self.engine.lookup(self._request(prompt, llm_string), self._revive))

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
        lookup = await self.engine.alookup(self._request(prompt, llm_string), self._revive)
        return self._result(lookup)

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
