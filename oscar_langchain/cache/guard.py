"""Guards against false semantic hits: cheap rules, plus any verifier you supply.

Embeddings put "Is aspirin safe during pregnancy?" and "Is aspirin not safe during
pregnancy?" very close together; a cache that trusts similarity alone answers one with
the other. Before a semantic neighbour is accepted, :class:`RuleGuard` checks that
both texts agree on:

* **negation** - both negated or neither (``not``, ``no``, ``never``, ``n't``...);
* **numbers** - the same numbers, in digits or words (``3`` = ``three``);
* **dates** - the same months, weekdays, years and relative days (``today``...);
* **named entities** - the same capitalised names and acronyms (``Paris``, ``NASA``);
* **scope** - the same quantifiers and extremes (``all``/``some``/``only``,
  ``largest``/``smallest``, ``first``/``last``, ``more``/``less``), with common
  synonyms folded (``biggest`` = ``largest``);
* **operators** - the same arithmetic between numbers (``2+2`` is not ``2-2``;
  ``plus``/``minus``/``times``/``divided by`` count as their symbols);
* **opposites** - the same side of common opposites (``ascending``/``descending``,
  ``create``/``delete``, ``encrypt``/``decrypt``, ``import``/``export``...);
* **content** - no content word swapped for another: a text may add words the other
  lacks (``capital`` / ``capital city``), but when *both* have content words the other
  lacks (``bleach and ammonia`` / ``bleach and vinegar``), they ask different things.
  Words with a common stem match (``boiling`` = ``boil``, ``summarize`` = ``summary``).

``content`` puts precision first: it also refuses paraphrases that swap a word for a
synonym (``Who wrote X?`` / ``Who is the author of X?``). With lexical embeddings (the
default :class:`~oscar_langchain.embeddings.OfflineEmbeddings`) similarity cannot tell a
swapped word from a synonym, so the check is what keeps them apart; with a semantic model
you may trade it for recall with ``RuleGuard(checks=SEMANTIC_CHECKS)`` (every check but
``content``).

Guards compose with ``&``; a plain ``(query, candidate) -> bool`` callable (say, a
cross-encoder with a threshold) is a guard too.

Example:
    >>> guard = RuleGuard()
    >>> guard("What is the capital of France?", "What's France's capital city?").accepted
    True
    >>> verdict = guard("Is aspirin safe in pregnancy?", "Is aspirin not safe in pregnancy?")
    >>> verdict.accepted, verdict.reason
    (False, 'negation differs')
    >>> guard("Is it safe to mix bleach and ammonia?", "Is it safe to mix bleach and vinegar?")
    GuardVerdict(accepted=False, reason='content differs')
    >>> guard("what is 2+2", "what is 2-2").reason
    'operators differs'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from oscar_langchain.errors import ConfigurationError

__all__ = [
    "CHECKS",
    "SEMANTIC_CHECKS",
    "AllOf",
    "CallableGuard",
    "Guard",
    "GuardLike",
    "GuardVerdict",
    "RuleGuard",
    "as_guard",
]


def _words(text: str) -> list[str]:
    return text.split()


_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_](?:[^\W\d_]|['\u2019-][^\W\d_])*")
_NEGATIONS = frozenset(
    _words(
        "not no never none nobody nothing neither nor nowhere without cannot "
        "isn't aren't wasn't weren't don't doesn't didn't can't couldn't won't wouldn't "
        "shouldn't hasn't haven't hadn't mustn't"
    )
)
_NUMBER_WORDS = {
    w: float(i)
    for i, w in enumerate(
        _words(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
        )
    )
}
_NUMBER_WORDS.update(
    {
        "thirty": 30.0,
        "forty": 40.0,
        "fifty": 50.0,
        "sixty": 60.0,
        "seventy": 70.0,
        "eighty": 80.0,
        "ninety": 90.0,
        "hundred": 100.0,
        "thousand": 1e3,
        "million": 1e6,
        "billion": 1e9,
        "half": 0.5,
        "dozen": 12.0,
        "twice": 2.0,
        "double": 2.0,
        "triple": 3.0,
    }
)
_MONTHS = {
    m: m[:3]
    for m in _words(
        "january february march april may june july august september october november december"
    )
}
_MONTHS.update({m[:3]: m[:3] for m in list(_MONTHS)})
_MONTHS.pop("may", None)  # "may" is mostly a verb; "May 3rd" still differs by its number
_DAYS = _words("monday tuesday wednesday thursday friday saturday sunday")
_RELATIVE = _words(
    "today tomorrow yesterday tonight now currently yearly daily weekly monthly "
    "morning evening night weekend"
)
_DATE_WORDS = {d: d for d in _DAYS + _RELATIVE}
_DATE_WORDS.update(_MONTHS)
_SCOPE = {
    # universal
    "all": "all", "every": "all", "each": "all", "always": "all", "entire": "all",
    "whole": "all", "everyone": "all", "everything": "all",
    # existential
    "some": "some", "any": "some", "sometimes": "some", "anyone": "some", "several": "some",
    # exclusive
    "only": "only", "just": "only", "exclusively": "only", "solely": "only",
    # extremes
    "largest": "max", "biggest": "max", "highest": "max", "maximum": "max", "most": "max",
    "greatest": "max", "tallest": "max", "longest": "max", "best": "best",
    "smallest": "min", "lowest": "min", "minimum": "min", "least": "min", "fewest": "min",
    "shortest": "min", "worst": "worst",
    "first": "first", "earliest": "first", "last": "last", "latest": "last", "final": "last",
    # comparison
    "more": "more", "greater": "more", "larger": "more", "bigger": "more", "higher": "more",
    "above": "more", "over": "more", "exceed": "more", "exceeds": "more",
    "less": "less", "fewer": "less", "smaller": "less", "lower": "less", "below": "less",
    "under": "less", "before": "before", "after": "after", "since": "after",
    "average": "average", "mean": "average", "median": "median", "total": "total",
    "per": "per",
}  # fmt: skip
_COMMON_CAPITALISED = frozenset(
    _words(
        "a an the i what whats what's which who whom whose when where why how is are was were "
        "do does did can could should would will shall may might must please tell give list "
        "explain describe name in on at of for to from by with and or but if then there this "
        "that these those it its my your our their his her we you they he she me us them "
        "hi hello hey thanks find show compare summarize summarise"
    )
)
_FUNCTION_WORDS = _COMMON_CAPITALISED | frozenset(
    _words(
        "be been being am isn aren has have had having get gets got getting make makes made "
        "go goes going into onto upon about as than so such too very also really there's "
        "here it's that's what're let let's i'm i've i'd i'll you're yours mine ours theirs "
        "something anything way ways thing things kind sort-of like"
    )
)
"""Words that carry no topic of their own (the ``content`` check skips them)."""
_OPPOSITES = {
    word: (pair, side)
    for pair, words in enumerate(
        (
            ("ascending", "descending"), ("ascend", "descend"), ("increase", "decrease"),
            ("increasing", "decreasing"), ("add", "remove"), ("create", "delete"),
            ("enable", "disable"), ("start", "stop"), ("open", "close"), ("buy", "sell"),
            ("import", "export"), ("encrypt", "decrypt"), ("encode", "decode"),
            ("upload", "download"), ("push", "pull"), ("include", "exclude"),
            ("accept", "reject"), ("allow", "deny"), ("win", "lose"), ("true", "false"),
            ("inside", "outside"), ("input", "output"), ("upper", "lower"),
            ("uppercase", "lowercase"), ("up", "down"), ("left", "right"),
            ("north", "south"), ("east", "west"), ("hot", "cold"), ("positive", "negative"),
            ("internal", "external"), ("min", "max"), ("login", "logout"),
            ("compress", "decompress"), ("lock", "unlock"), ("install", "uninstall"),
            ("subscribe", "unsubscribe"),
        )
    )
    for side, word in enumerate(words)
}  # fmt: skip
"""Words whose opposite changes the question (the ``opposites`` check)."""
_SYMBOLS = {"x": "*", "\u00d7": "*", "\u00f7": "/"}
_OPERATOR_WORDS = {"plus": "+", "minus": "-", "times": "*", "multiplied": "*", "divided": "/"}
_OPERATOR = re.compile("(?<=[\\d)])\\s*([-+*/^\u00d7\u00f7x])\\s*(?=[\\d(])")


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.replace("\u2019", "'"))


def _stem(word: str) -> str:
    """A light English stem: enough to match ``boiling``/``boil``, ``spiders``/``spider``."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + keep
    return word


def _operators(text: str, lowered: list[str]) -> tuple[str, ...]:
    """Arithmetic between numbers, in order: symbols, then the operator words."""
    symbols = [_SYMBOLS.get(op, op) for op in _OPERATOR.findall(text)]
    return tuple(symbols) + tuple(_OPERATOR_WORDS[w] for w in lowered if w in _OPERATOR_WORDS)


def _same_word(a: str, b: str) -> bool:
    """Same stem, or a common prefix of at least five letters (``summarize``/``summary``)."""
    if a == b:
        return True
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    return common >= 5


def _unmatched(words: frozenset[str], others: frozenset[str]) -> bool:
    """Whether some word of ``words`` matches none of ``others``."""
    return any(not any(_same_word(w, o) for o in others) for w in words)


def _fold(word: str) -> str:
    lower = word.lower()
    return lower[:-2] if lower.endswith("'s") else lower


def _number(token: str) -> float | None:
    lower = token.lower()
    if lower in _NUMBER_WORDS:
        return _NUMBER_WORDS[lower]
    if lower[0].isdigit():
        try:
            return float(lower.replace(",", ""))
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class GuardVerdict:
    """Whether a semantic neighbour may answer the query, and why not."""

    accepted: bool
    reason: str = ""


@runtime_checkable
class Guard(Protocol):
    """Decides whether ``candidate``'s cached answer may answer ``query``."""

    def __call__(self, query: str, candidate: str) -> GuardVerdict:
        """The verdict on answering ``query`` with ``candidate``'s entry."""
        ...


GuardLike = Guard | Callable[[str, str], bool]
"""A guard, or any ``(query, candidate) -> bool`` callable."""


@dataclass(frozen=True)
class CallableGuard:
    """Adapts a ``(query, candidate) -> bool`` verifier (e.g. a cross-encoder) to a guard.

    Example:
        >>> CallableGuard(lambda q, c: len(q) == len(c), name="same-length")("ab", "abc")
        GuardVerdict(accepted=False, reason='same-length rejected')
    """

    verifier: Callable[[str, str], bool]
    name: str = "verifier"

    def __call__(self, query: str, candidate: str) -> GuardVerdict:
        """Ask the verifier."""
        if self.verifier(query, candidate):
            return GuardVerdict(True)
        return GuardVerdict(False, f"{self.name} rejected")

    def __and__(self, other: GuardLike) -> AllOf:
        return AllOf((self, as_guard(other)))


@dataclass(frozen=True)
class AllOf:
    """Accept only if every guard accepts; the first refusal gives the reason.

    Example:
        >>> both = RuleGuard() & (lambda q, c: "please" not in c.lower())
        >>> both("Name 3 colours", "Please name 3 colours").reason
        'verifier rejected'
    """

    guards: tuple[Guard, ...]

    def __call__(self, query: str, candidate: str) -> GuardVerdict:
        """Run the guards in order."""
        for guard in self.guards:
            verdict = guard(query, candidate)
            if not verdict.accepted:
                return verdict
        return GuardVerdict(True)

    def __and__(self, other: GuardLike) -> AllOf:
        return AllOf((*self.guards, as_guard(other)))


def as_guard(guard: GuardLike) -> Guard:
    """``guard`` itself if it returns verdicts, else wrapped in :class:`CallableGuard`."""
    if isinstance(guard, (RuleGuard, AllOf, CallableGuard)):
        return guard
    return CallableGuard(guard)  # type: ignore[arg-type]


CHECKS = ("negation", "numbers", "dates", "entities", "scope", "operators", "opposites", "content")
"""Every check :class:`RuleGuard` knows, and its default."""
SEMANTIC_CHECKS = tuple(c for c in CHECKS if c != "content")
"""Every check but ``content``: for semantic embeddings, when recall matters more."""
_CHECKS = CHECKS


@dataclass(frozen=True)
class Features:
    """What :class:`RuleGuard` extracts from one text."""

    negation: bool
    numbers: frozenset[float]
    dates: frozenset[str]
    entities: frozenset[str]
    scope: frozenset[str]
    operators: tuple[str, ...] = ()
    opposites: frozenset[tuple[int, int]] = frozenset()
    content: frozenset[str] = frozenset()


def extract_features(text: str) -> Features:
    """Negation, numbers, dates, named entities and scope words of ``text``."""
    tokens = _tokens(text)
    lowered = [t.lower() for t in tokens]
    numbers = frozenset(n for n in (_number(t) for t in tokens) if n is not None)
    dates = frozenset(_DATE_WORDS[w] for w in lowered if w in _DATE_WORDS)
    entities = frozenset(
        _fold(t)
        for t in tokens
        if t[0].isupper()
        and _fold(t) not in _COMMON_CAPITALISED
        and _fold(t) not in _DATE_WORDS
        and _fold(t) not in _SCOPE
        and _fold(t) not in _NEGATIONS
        and _number(t) is None
    )
    scope = frozenset(_SCOPE[w] for w in lowered if w in _SCOPE)
    negation = any(w in _NEGATIONS or w.endswith("n't") for w in lowered)
    opposites = frozenset(_OPPOSITES[w] for w in lowered if w in _OPPOSITES)
    content = frozenset(
        _stem(_fold(w))
        for w in lowered
        if w not in _FUNCTION_WORDS
        and _fold(w) not in _FUNCTION_WORDS
        and w not in _NEGATIONS
        and not w.endswith("n't")
        and w not in _DATE_WORDS
        and w not in _SCOPE
        and w not in _OPPOSITES
        and w not in _OPERATOR_WORDS
        and _number(w) is None
    )
    return Features(
        negation, numbers, dates, entities, scope, _operators(text, lowered), opposites, content
    )


@dataclass(frozen=True)
class RuleGuard:
    """Rule-based verifier: both texts must agree on the selected checks.

    Attributes:
        checks: which checks to run, among :data:`CHECKS` (all by default; see the
            module docstring, and :data:`SEMANTIC_CHECKS`).
    """

    checks: tuple[str, ...] = CHECKS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.checks) - set(_CHECKS))
        if unknown:
            raise ConfigurationError("checks", f"unknown checks {unknown}; choose from {_CHECKS}")

    def __call__(self, query: str, candidate: str) -> GuardVerdict:
        """Compare the features of both texts, check by check."""
        a, b = extract_features(query), extract_features(candidate)
        for check in self.checks:
            if check == "content":
                if _unmatched(a.content, b.content) and _unmatched(b.content, a.content):
                    return GuardVerdict(False, "content differs")
            elif getattr(a, check) != getattr(b, check):
                return GuardVerdict(False, f"{check} differs")
        return GuardVerdict(True)

    def __and__(self, other: GuardLike) -> AllOf:
        return AllOf((self, as_guard(other)))


def check_all(guards: Iterable[GuardLike]) -> Guard:
    """One guard that accepts only when all of ``guards`` do."""
    return AllOf(tuple(as_guard(g) for g in guards))
