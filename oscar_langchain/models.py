"""Model registry: each model's encoding, context window and prices, and cost estimates.

The registry starts from ``oscar_langchain/data/models.json`` (prices in USD per million
tokens, dated by its ``as_of`` field). Users extend or override it at run time with
:meth:`ModelRegistry.register` or :meth:`ModelRegistry.load_json`, or by pointing the
``OSCAR_MODEL_REGISTRY`` environment variable at a JSON file of the same shape.

Lookups are exact (a name or one of the entry's declared aliases): an unknown model is an
:class:`~oscar_langchain.errors.UnknownModelError` unless the caller passes ``default=``.
Entries are checked when built: ``capabilities`` and ``aliases`` are lists of strings (a
lone string is an error), ``encoding`` is one of :data:`ENCODING_NAMES`, and a name or
alias already naming another entry is refused (a :class:`ConfigurationError` naming
the field).

Example:
    >>> registry = ModelRegistry.default()
    >>> registry.get("gpt-4o-mini").context_window
    128000
    >>> round(estimate_cost("gpt-4o-mini", 1_000_000, 1_000_000), 2)
    0.75
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from oscar_langchain._encodings import ENCODINGS
from oscar_langchain.errors import ConfigurationError, UnknownModelError

__all__ = ["ENCODING_NAMES", "ModelInfo", "ModelRegistry", "default_registry", "estimate_cost"]

ENCODING_NAMES = frozenset(ENCODINGS)
"""The tiktoken encodings oscar counts with (those :mod:`oscar_langchain.tokens` ships)."""

_MISSING: Any = object()
_FIELDS = (
    "name",
    "provider",
    "encoding",
    "encoding_exact",
    "context_window",
    "max_output_tokens",
    "input_price",
    "output_price",
    "capabilities",
    "quality",
    "aliases",
)


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model.

    Attributes:
        name: canonical model id (what the provider's API calls it).
        provider: e.g. ``"openai"``, ``"anthropic"``, ``"local"``.
        encoding: tiktoken encoding used to count its tokens.
        encoding_exact: ``False`` when the encoding only approximates the model's tokenizer.
        context_window: maximum input + output tokens.
        max_output_tokens: maximum completion tokens.
        input_price: USD per million input tokens.
        output_price: USD per million output tokens.
        capabilities: e.g. ``{"tools", "vision", "json", "streaming"}``.
        quality: a 0..1 quality score the router can rank on.
        aliases: other names that resolve to this entry (dated snapshots...).
    """

    name: str
    provider: str = "unknown"
    encoding: str = "o200k_base"
    encoding_exact: bool = True
    context_window: int = 8192
    max_output_tokens: int = 4096
    input_price: float = 0.0
    output_price: float = 0.0
    capabilities: frozenset[str] = field(default_factory=frozenset)
    quality: float = 0.5
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError("name", f"must be a non-empty string, got {self.name!r}")
        for attr in ("context_window", "max_output_tokens"):
            value = getattr(self, attr)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(attr, f"must be an integer >= 0, got {value!r}")
        for attr in ("input_price", "output_price"):
            value = getattr(self, attr)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(attr, f"must be a number >= 0, got {value!r}")
        if not 0.0 <= float(self.quality) <= 1.0:
            raise ConfigurationError("quality", f"must be within [0, 1], got {self.quality!r}")
        if not isinstance(self.provider, str) or not self.provider:
            raise ConfigurationError(
                "provider", f"must be a non-empty string, got {self.provider!r}"
            )
        if self.encoding not in ENCODING_NAMES:
            raise ConfigurationError(
                "encoding", f"must be one of {sorted(ENCODING_NAMES)}, got {self.encoding!r}"
            )
        if not isinstance(self.encoding_exact, bool):
            raise ConfigurationError(
                "encoding_exact", f"must be a bool, got {self.encoding_exact!r}"
            )
        aliases = _names("aliases", self.aliases)
        if self.name in aliases or len(set(aliases)) != len(aliases):
            raise ConfigurationError("aliases", f"repeat a name: {list(aliases)} of {self.name!r}")
        object.__setattr__(
            self, "capabilities", frozenset(_names("capabilities", self.capabilities))
        )
        object.__setattr__(self, "aliases", aliases)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD cost of a call with these token counts."""
        _check_tokens("input_tokens", input_tokens)
        _check_tokens("output_tokens", output_tokens)
        return (input_tokens * self.input_price + output_tokens * self.output_price) / 1e6

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        """Build from a JSON-style mapping; unknown keys are an error naming them."""
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise ConfigurationError("model entry", f"unknown keys {sorted(unknown)}")
        if "name" not in data:
            raise ConfigurationError("name", "missing from model entry")
        return cls(**data)


def _names(attr: str, value: Any) -> tuple[str, ...]:
    """``value`` as a tuple of non-empty strings; a lone string is an error, not its letters."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError(attr, f"must be a list of strings, got {value!r}")
    names = tuple(value)
    bad = [v for v in names if not isinstance(v, str) or not v]
    if bad:
        raise ConfigurationError(attr, f"must hold non-empty strings, got {bad!r}")
    return names


def _check_tokens(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(name, f"must be an integer >= 0, got {value!r}")


class ModelRegistry:
    """A thread-safe, extensible map from model name (or alias) to :class:`ModelInfo`."""

    def __init__(self, models: Iterable[ModelInfo] = ()) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, ModelInfo] = {}
        self._index: dict[str, ModelInfo] = {}
        for info in models:
            self.register(info)

    @classmethod
    def default(cls) -> ModelRegistry:
        """A fresh registry holding the bundled models (and ``OSCAR_MODEL_REGISTRY``'s)."""
        registry = cls()
        text = resources.files("oscar_langchain").joinpath("data/models.json").read_text("utf-8")
        registry.load_mapping(json.loads(text))
        extra = os.environ.get("OSCAR_MODEL_REGISTRY")
        if extra:
            registry.load_json(extra)
        return registry

    def register(self, info: ModelInfo, *, override: bool = True) -> None:
        """Add or replace a model; with ``override=False`` an existing name is an error.

        Raises:
            ConfigurationError: also when the name or an alias is already another
                model's name or alias (one would shadow the other).
        """
        if not isinstance(info, ModelInfo):
            raise ConfigurationError("info", f"must be a ModelInfo, got {type(info).__name__}")
        with self._lock:
            if not override and info.name in self._models:
                raise ConfigurationError("name", f"model {info.name!r} is already registered")
            for key in (info.name, *info.aliases):
                owner = self._index.get(key)
                if owner is not None and owner.name != info.name:
                    kind = "the name" if key == owner.name else "an alias"
                    raise ConfigurationError(
                        "name" if key == info.name else "aliases",
                        f"{key!r} (of model {info.name!r}) is {kind} of model {owner.name!r}",
                    )
            old = self._models.get(info.name)
            if old is not None:
                for key in (old.name, *old.aliases):
                    self._index.pop(key, None)
            self._models[info.name] = info
            for key in (info.name, *info.aliases):
                self._index[key] = info

    def load_mapping(self, data: Mapping[str, Any]) -> None:
        """Register every entry of ``{"models": [...]}``."""
        entries = data.get("models")
        if not isinstance(entries, list):
            raise ConfigurationError("models", "must be a list of model entries")
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise ConfigurationError("models", f"entry {entry!r} is not an object")
            self.register(ModelInfo.from_dict(entry))

    def load_json(self, path: str | os.PathLike[str]) -> None:
        """Register the models of a JSON file shaped like the bundled ``models.json``."""
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigurationError("path", f"cannot read model registry {path}: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigurationError("path", f"{path} does not hold a JSON object")
        self.load_mapping(data)

    def get(self, name: str, default: ModelInfo = _MISSING) -> ModelInfo:
        """The entry for ``name`` (or an alias); ``default`` if given, else an error."""
        if not isinstance(name, str):
            raise ConfigurationError("model", f"must be a string, got {type(name).__name__}")
        info = self._index.get(name)
        if info is not None:
            return info
        if default is not _MISSING:
            return default
        raise UnknownModelError(name, list(self._models))

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def names(self) -> list[str]:
        """Canonical names of every registered model."""
        return sorted(self._models)


_default: ModelRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> ModelRegistry:
    """The process-wide registry (built on first use; extend it with ``register``)."""
    global _default  # noqa: PLW0603 - one lazily built process-wide registry
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = ModelRegistry.default()
    return _default


def estimate_cost(
    model: str,
    input_tokens: int,
    output_tokens: int,
    registry: ModelRegistry | None = None,
    default: ModelInfo = _MISSING,
) -> float:
    """USD cost of ``input_tokens`` in and ``output_tokens`` out on ``model``.

    Raises:
        UnknownModelError: the model is unknown and no ``default`` was given.
        ConfigurationError: a token count is negative or not an integer.
    """
    return (registry or default_registry()).get(model, default).cost(input_tokens, output_tokens)
