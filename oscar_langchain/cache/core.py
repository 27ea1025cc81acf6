"""Pure cache core: request normalisation, stable keys, policies and statistics.

Nothing here imports LangChain. A :class:`CacheRequest` is what every shell turns its
input into: the text to match (the last user message), the conversation context that
precedes it, the model identity and the generation parameters.

**Exact keys** hash the normalised text, the whole context (each message with its
type and the fields that reach the model: tool calls, tool call ids, names), the type
and fields of the message the text comes from, the model identity, the
namespace and every parameter that can change the answer (everything except transport
settings such as ``timeout`` or ``api_key``; unknown parameters are kept, so an
unfamiliar option can only cause a miss, never a wrong hit).

**Semantic keys** (the documented context policy): the *text* is compared by embedding
similarity, while everything else must agree exactly. That "everything else" is the
request's *partition*: namespace, model identity, answer-changing parameters and the
conversation context selected by :class:`ContextPolicy` (by default the system prompt
and every preceding message). So the same question asked in another conversation, of
another model, or with another system prompt is never a semantic hit.

Example:
    >>> req = CacheRequest(text="What is  the capital of France?", model="gpt-4o-mini",
    ...                    params={"temperature": 0, "timeout": 30})
    >>> req.exact_key() == CacheRequest(text="What is the capital of France?",
    ...                                 model="gpt-4o-mini", params={"temperature": 0}).exact_key()
    True
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from oscar_langchain.errors import ConfigurationError

__all__ = [
    "NON_ANSWER_PARAMS",
    "CacheRequest",
    "CacheStats",
    "ContextPolicy",
    "TemperaturePolicy",
    "canonical_json",
    "normalise_text",
]

NON_ANSWER_PARAMS = frozenset(
    {
        "api_key",
        "openai_api_key",
        "base_url",
        "openai_api_base",
        "organization",
        "timeout",
        "request_timeout",
        "max_retries",
        "streaming",
        "stream",
        "stream_usage",
        "callbacks",
        "callback_manager",
        "verbose",
        "tags",
        "metadata",
        "run_name",
        "http_client",
        "http_async_client",
        "default_headers",
        "default_query",
        "cache",
        "rate_limiter",
    }
)
"""Parameters that never change the answer and so are left out of every key."""

_SPACE = re.compile(r"\s+")


def normalise_text(text: str, *, casefold: bool = False) -> str:
    """NFKC-normalise, collapse runs of whitespace and strip; optionally casefold."""
    out = _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()
    return out.casefold() if casefold else out


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces; values JSON cannot encode use ``repr``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()


@dataclass(frozen=True)
class ContextPolicy:
    """Which conversation context a semantic key must match exactly.

    Attributes:
        mode: ``"full"`` (system prompt and every preceding message, the default),
            ``"system"`` (the system prompt only), ``"last_n"`` (the system prompt and
            the last ``n`` preceding messages) or ``"none"`` (ignore the conversation;
            only for stateless single-turn use).
        n: how many preceding messages ``"last_n"`` keeps.
    """

    mode: Literal["full", "system", "last_n", "none"] = "full"
    n: int = 2

    def __post_init__(self) -> None:
        if self.mode not in ("full", "system", "last_n", "none"):
            raise ConfigurationError("mode", f"unknown context policy {self.mode!r}")
        if self.n < 0:
            raise ConfigurationError("n", "must be >= 0")

    def select(self, system: str, context: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        """The (system prompt, preceding messages) a semantic key must match."""
        if self.mode == "full":
            return system, context
        if self.mode == "system":
            return system, ()
        if self.mode == "last_n":
            return system, context[len(context) - self.n :] if self.n else ()
        return "", ()


@dataclass(frozen=True)
class TemperaturePolicy:
    """What to do when a request samples (temperature > 0).

    Attributes:
        mode: ``"bypass"`` (default: neither read nor write the cache), ``"cache"``
            (cache as if deterministic) or ``"sample"`` (keep up to ``samples`` answers
            per key and answer with a random one, so repeated calls still vary).
        samples: how many answers ``"sample"`` keeps per key.
        rng: the random source ``"sample"`` uses (inject a seeded one in tests).
    """

    mode: Literal["bypass", "cache", "sample"] = "bypass"
    samples: int = 3
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("bypass", "cache", "sample"):
            raise ConfigurationError("mode", f"unknown temperature policy {self.mode!r}")
        if self.samples < 1:
            raise ConfigurationError("samples", "must be >= 1")

    def slot(self, temperature: float | None) -> int | None:
        """Key suffix for this request: ``None`` bypasses the cache, ``0`` is the plain key."""
        if temperature is None or temperature <= 0 or self.mode == "cache":
            return 0
        if self.mode == "bypass":
            return None
        return self.rng.randrange(self.samples)


@dataclass(frozen=True)
class CacheRequest:
    """One cacheable request, already taken apart by a shell.

    Attributes:
        text: the text matched semantically (the last user message, or the prompt).
        model: the model identity (name, provider, endpoint flavour).
        params: generation parameters; those in :data:`NON_ANSWER_PARAMS` are ignored.
        system: the system prompt, if any.
        context: the messages before ``text``, each already rendered to a string.
        namespace: a user namespace (tenant, application) keys never cross.
        turn: what the text is when it is not a plain user message: the last message's
            type and answer-changing fields (tool calls, tool call id, name...), which
            exact and semantic keys both match exactly; ``""`` for a plain prompt.
    """

    text: str
    model: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    system: str = ""
    context: tuple[str, ...] = ()
    namespace: str = "default"
    turn: str = ""

    @property
    def temperature(self) -> float | None:
        """The request's temperature, if it gave one."""
        value = self.params.get("temperature")
        return float(value) if isinstance(value, (int, float)) else None

    def answer_params(self) -> dict[str, Any]:
        """The parameters that can change the answer."""
        return {k: v for k, v in self.params.items() if k not in NON_ANSWER_PARAMS}

    def normalised_text(self) -> str:
        """The text with whitespace and Unicode normalised."""
        return normalise_text(self.text)

    def partition(self, policy: ContextPolicy | None = None) -> str:
        """What a semantic neighbour must share exactly (see the module docstring)."""
        system, context = (policy or ContextPolicy()).select(self.system, self.context)
        return _digest(
            "partition",
            self.namespace,
            self.model,
            canonical_json(self.answer_params()),
            normalise_text(system),
            canonical_json([normalise_text(c) for c in context]),
            *self._turn_part(),
        )

    def exact_key(self, slot: int = 0) -> str:
        """Stable exact key; ``slot`` > 0 names one of several sampled answers."""
        key = _digest(
            "exact",
            self.namespace,
            self.model,
            canonical_json(self.answer_params()),
            normalise_text(self.system),
            canonical_json([normalise_text(c) for c in self.context]),
            self.normalised_text(),
            *self._turn_part(),
        )
        return f"{key}#{slot}" if slot else key

    def _turn_part(self) -> tuple[str, ...]:
        # Only when set, so the keys of plain prompts are those of earlier versions.
        return (f"turn:{self.turn}",) if self.turn else ()


@dataclass
class CacheStats:
    """Counters kept by a cache; read a consistent copy with :meth:`snapshot`.

    Attributes:
        hits: lookups answered from the cache (exact or semantic).
        semantic_hits: hits found by similarity rather than by exact key.
        misses: lookups the cache could not answer.
        rejected: semantic neighbours above the threshold that the guard refused.
        bypassed: requests the temperature policy kept away from the cache.
        evictions: entries removed to respect the maximum size.
        errors: backend failures and corrupt entries (each served as a miss).
        stale: entries read fine but unusable by this caller: an output type it did not
            register, or one that no longer validates (each served as a miss).
        size: entries stored at the last count.
    """

    hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    rejected: int = 0
    bypassed: int = 0
    evictions: int = 0
    errors: int = 0
    stale: int = 0
    size: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        """Increment counters by name."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    @property
    def lookups(self) -> int:
        """Hits plus misses."""
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        """Share of lookups answered from the cache."""
        return self.hits / self.lookups if self.lookups else 0.0

    @property
    def semantic_hit_rate(self) -> float:
        """Share of lookups answered by a semantic neighbour."""
        return self.semantic_hits / self.lookups if self.lookups else 0.0

    def snapshot(self) -> dict[str, float]:
        """The counters and rates as a plain dict."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "semantic_hits": self.semantic_hits,
                "rejected": self.rejected,
                "bypassed": self.bypassed,
                "evictions": self.evictions,
                "errors": self.errors,
                "stale": self.stale,
                "size": self.size,
                "hit_rate": self.hit_rate,
                "semantic_hit_rate": self.semantic_hit_rate,
            }


Clock = Callable[[], float]
