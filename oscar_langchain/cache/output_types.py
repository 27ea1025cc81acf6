"""Structured outputs a cache may store: pydantic models, as JSON, revived only if registered.

A chain that ends in ``with_structured_output(Answer)`` or ``PydanticOutputParser``
returns pydantic models, which LangChain's JSON serialisation cannot store. An
:class:`OutputTypes` registry lists the model classes a cache may store and revive:

* **store:** ``model_dump(mode="json", by_alias=True)`` under a tag, the class's module and
  qualified name; the dump must validate back into an equal model, otherwise the value
  is not stored (a private attribute, a lossy serialiser or an ``Any`` field holding a
  ``datetime`` would come back different);
* **revive:** ``model_validate_json`` of the stored data, and only for a tag of a
  registered class. JSON-mode validation is the inverse of the JSON-mode dump (strict
  models accept a datetime's ISO string only from JSON). Nothing is ever imported by a
  name read from cache data: an unknown tag, or data that no longer validates (the schema
  changed), raises :class:`~oscar_langchain.errors.StaleEntryError`, which caches serve
  as a miss;
* **keys:** :meth:`OutputTypes.schemas` are the classes' JSON schemas; a cache keys on
  their :func:`schema_digest`, so a change of fields gives new keys.

Nothing here imports LangChain; :mod:`oscar_langchain.cache.adapters` places the tagged
data in LangChain's serialisation.

Example:
    >>> from pydantic import BaseModel
    >>> class Answer(BaseModel):
    ...     city: str
    ...     population: int
    >>> types = OutputTypes((Answer,))
    >>> tag, data = types.dump(Answer(city="Paris", population=2_100_000))
    >>> tag.endswith("Answer"), data
    (True, {'city': 'Paris', 'population': 2100000})
    >>> types.load(tag, data)
    Answer(city='Paris', population=2100000)
    >>> try:
    ...     OutputTypes().load(tag, data)  # not registered: a miss for the cache
    ... except StaleEntryError as exc:
    ...     print(str(exc).rsplit(".", 1)[-1])
    Answer is not registered (output_types)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, PydanticUserError, ValidationError

from oscar_langchain.errors import ConfigurationError, StaleEntryError

__all__ = ["OutputTypes", "UnserialisableValueError", "schema_digest", "type_tag"]


class UnserialisableValueError(TypeError):
    """A value has no safe JSON form, so it is not cached."""


def type_tag(cls: type[Any]) -> str:
    """A class's tag in cache data: its module and qualified name."""
    return f"{cls.__module__}.{cls.__qualname__}"


def schema_digest(schemas: Iterable[Any]) -> str:
    """A short digest of JSON schemas, independent of their order."""
    texts = sorted({json.dumps(s, sort_keys=True, separators=(",", ":")) for s in schemas})
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]


def _json_schema(cls: type[BaseModel]) -> dict[str, Any]:
    try:
        return cls.model_json_schema()
    except (PydanticUserError, TypeError, ValueError) as exc:  # PydanticInvalidForJsonSchema
        raise ConfigurationError(
            "output_types", f"{type_tag(cls)} has no JSON schema, so no JSON form: {exc}"
        ) from exc


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)  # never empty
    where = ".".join(str(p) for p in errors[0]["loc"]) or "(root)"
    return f"{len(errors)} error(s), first at {where}: {errors[0]['msg']}"


@dataclass(frozen=True)
class OutputTypes:
    """The pydantic (v2) model classes a cache may store and revive.

    Attributes:
        types: the registered classes; each tag (module and qualified name) at most once.
    """

    types: tuple[type[BaseModel], ...] = ()
    _by_tag: Mapping[str, type[BaseModel]] = field(init=False, repr=False, compare=False)
    _schemas: tuple[dict[str, Any], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_tag: dict[str, type[BaseModel]] = {}
        for cls in self.types:
            if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
                raise ConfigurationError(
                    "output_types", f"must be pydantic v2 model classes, got {cls!r}"
                )
            tag = type_tag(cls)
            if by_tag.get(tag, cls) is not cls:
                raise ConfigurationError("output_types", f"two classes are named {tag}")
            by_tag[tag] = cls
        object.__setattr__(self, "_by_tag", by_tag)
        object.__setattr__(self, "_schemas", tuple(_json_schema(c) for c in by_tag.values()))

    def __bool__(self) -> bool:
        return bool(self._by_tag)

    def schemas(self) -> tuple[dict[str, Any], ...]:
        """The registered classes' JSON schemas, for cache keys."""
        return self._schemas

    def registered(self, value: Any) -> bool:
        """Whether ``value`` is an instance of a registered class (not of a subclass)."""
        return self._by_tag.get(type_tag(type(value))) is type(value)

    def dump(self, value: BaseModel) -> tuple[str, Any]:
        """``(tag, JSON data)`` of a registered model that revives into an equal model.

        Raises:
            UnserialisableValueError: the class is not registered, or the data does not
                revive into an equal model.
        """
        cls, tag = type(value), type_tag(type(value))
        if not self.registered(value):
            raise UnserialisableValueError(
                f"{tag} is a pydantic model not in output_types: pass "
                f"output_types=[{cls.__name__}] to cache it"
            )
        try:
            data = value.model_dump(mode="json", by_alias=True)
            same = cls.model_validate_json(json.dumps(data, allow_nan=False)) == value
        except ValidationError as exc:
            raise UnserialisableValueError(
                f"{tag} does not revive from its JSON form: {_first_error(exc)}"
            ) from exc
        except ValueError as exc:  # serialisation errors, NaN
            raise UnserialisableValueError(f"{tag} has no JSON form: {exc}") from exc
        if not same:
            raise UnserialisableValueError(
                f"{tag} revives from its JSON form as a different value (private "
                "attributes, a lossy serialiser or an Any field?), so it is not cached"
            )
        return tag, data

    def load(self, tag: str, data: Any) -> BaseModel:
        """The registered class ``tag`` names, validated from ``data``.

        Raises:
            StaleEntryError: no registered class has this tag, or ``data`` does not
                validate (the schema changed since it was stored).
        """
        cls = self._by_tag.get(tag)
        if cls is None:
            raise StaleEntryError(f"output type {tag} is not registered (output_types)")
        try:
            return cls.model_validate_json(json.dumps(data))
        except (ValidationError, TypeError, ValueError) as exc:
            detail = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
            raise StaleEntryError(f"{tag} no longer validates the stored data: {detail}") from exc
