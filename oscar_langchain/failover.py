"""FailoverRunnable: ordered candidates, each behind a circuit breaker, none lost.

Each request tries the candidates in order. A candidate whose breaker is open is
skipped without a call; a retryable failure (time-out, 5xx, connection, rate limit)
is retried on the same candidate with exponential backoff, jitter and the server's
``Retry-After`` (tenacity, with injected ``sleep``/``asleep``); a context-length
overflow skips to the next candidate with a larger context window; any other
failure moves on. When every candidate failed, :class:`FailoverError` carries every
attempt (candidate, error, classification, duration). These decisions are made by
:class:`~oscar_langchain.failover_plan.FailoverPlan`, which invoke, ainvoke and both
stream paths drive (they differ only in how they wait). ``attempt_timeout`` bounds
each attempt, and each chunk's wait in a stream, sync and async alike.

Every attempt is a child run tagged ``oscar.candidate:<name>`` with metadata
``oscar.candidate`` and ``oscar.attempt``; the run is annotated with ``oscar.route``
and ``oscar.breaker.state``; a message output carries ``oscar.route``,
``oscar.candidate`` and ``oscar.attempts`` in ``response_metadata``. Call-time
keyword arguments (``invoke(x, stop=[...])``, ``.bind(stop=[...])``) are passed to
every candidate tried, on every path.

Streaming: failures before the first chunk fail over transparently. After it,
``stream_policy`` decides: ``"raise"`` raises :class:`FailoverError`; ``"continue"``
sends the partial answer to the next candidate as context (the conversation plus
the partial AI message and ``continuation_prompt``) and streams only the
continuation.

Example:
    >>> from langchain_core.runnables import RunnableLambda
    >>> def down(_):
    ...     raise TimeoutError("primary down")
    >>> chain = with_failover(
    ...     RunnableLambda(down, name="primary"), RunnableLambda(lambda x: x * 2, name="backup"),
    ...     retry=RetryPolicy(max_attempts=1),
    ... )
    >>> chain.invoke(21), chain.health()["primary"]["calls"]
    (42, 1)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import importlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from functools import cached_property, partial
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict, Field

from oscar_langchain._runnable import (
    OscarRunnable,
    aannotate_run,
    aclosing_stream,
    annotate_run,
    child_config,
)
from oscar_langchain.breaker_machine import BreakerConfig
from oscar_langchain.breaker_store import BreakerStore
from oscar_langchain.circuit_breaker import BreakerEvent, CircuitBreaker
from oscar_langchain.errors import ConfigurationError, UnknownModelError
from oscar_langchain.failover_plan import Answer, Attempt, FailoverPlan, arun_plan, run_plan
from oscar_langchain.failover_policy import RetryPolicy
from oscar_langchain.failover_stream import astream_with_failover, stream_with_failover

__all__ = ["AttemptTimeoutError", "FailoverRunnable", "RetryPolicy", "with_failover"]

_CONTINUE = (
    "Your previous answer was cut off. Continue it exactly where it stopped, "
    "without repeating anything already written."
)


class AttemptTimeoutError(TimeoutError):
    """One attempt took longer than ``attempt_timeout``."""


def _candidate_name(runnable: Runnable[Any, Any], index: int) -> str:
    for attr in ("model_name", "model", "deployment_name"):
        value = getattr(runnable, attr, None)
        if isinstance(value, str) and value:
            return value
    return runnable.get_name() or f"candidate{index}"


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def _to_messages(value: Any) -> list[BaseMessage]:
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(value)]
    return list(convert_to_messages(value))


def _text(value: Any) -> str:
    if isinstance(value, BaseMessage):
        return value.text
    return str(value)


class _Lineup:
    """The candidates' names, breakers, context windows and child-run tags, built once."""

    __slots__ = ("breakers", "clock", "names", "tags", "windows")

    def __init__(
        self, names: list[str], breakers: list[CircuitBreaker], windows: list[int | None]
    ) -> None:
        self.names = names
        self.breakers = breakers
        self.windows = windows
        self.tags = [f"oscar.candidate:{name}" for name in names]
        self.clock = breakers[0].clock


class FailoverRunnable(OscarRunnable[Any, Any]):
    """Ordered candidates, each behind its own circuit breaker (see the module doc).

    Example:
        >>> from langchain_core.language_models import FakeListChatModel
        >>> chain = FailoverRunnable(candidates=[FakeListChatModel(responses=["hi"])])
        >>> msg = chain.invoke("hello")
        >>> msg.content, msg.response_metadata["oscar.route"]
        ('hi', ['FakeListChatModel'])
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")
    _explicit_child_configs = True  # every attempt gets its own child_config

    candidates: list[Runnable[Any, Any]]
    """The runnables to try, in order (typically chat models)."""
    names: list[str] | None = None
    """Names of the candidates (default: model name, else the runnable's name)."""
    breaker_config: BreakerConfig = Field(default_factory=BreakerConfig)
    """Window and thresholds of each candidate's breaker."""
    breaker_store: Any = None
    """Where the breakers keep state (default: memory; a RedisBreakerStore to share)."""
    breaker_listeners: list[Callable[[BreakerEvent], None]] = Field(default_factory=list)
    """Called with every breaker event of every candidate."""
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    """Retries per candidate."""
    attempt_timeout: float | None = None
    """Seconds one attempt may take (for streams: until each chunk arrives)."""
    stream_policy: Literal["raise", "continue"] = "raise"
    """What to do when a stream fails after its first chunk."""
    continuation_prompt: str = _CONTINUE
    """Instruction sent with the partial answer under ``stream_policy="continue"``."""
    context_windows: dict[str, int] = Field(default_factory=dict)
    """Context window per candidate name; others are looked up in the model registry."""
    registry: Any = None
    """A ``ModelRegistry`` (default: ``oscar_langchain.models.default_registry()``)."""
    clock: Callable[[], float] | None = None
    """Clock of the breakers (default: monotonic, or wall time for a shared store)."""
    sleep: Callable[[float], None] = time.sleep
    """How sync retries wait."""
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """How async retries wait."""

    def model_post_init(self, context: Any, /) -> None:
        """Check the arguments and build one breaker per candidate."""
        if not self.candidates:
            raise ConfigurationError("candidates", "give at least one runnable")
        if self.names is not None and len(self.names) != len(self.candidates):
            raise ConfigurationError("names", "must have one name per candidate")
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ConfigurationError("attempt_timeout", "must be > 0 or None")
        if self.breaker_store is not None and not isinstance(self.breaker_store, BreakerStore):
            raise ConfigurationError("breaker_store", "must implement BreakerStore")
        _ = self._lineup  # build the breakers now

    # A cached property, not a PrivateAttr: pydantic serves private attributes through
    # __getattr__ (a failed lookup first), which costs microseconds on every access.
    @cached_property
    def _lineup(self) -> _Lineup:
        raw = self.names or [_candidate_name(c, i) for i, c in enumerate(self.candidates)]
        names = _unique(raw)
        breakers = [
            CircuitBreaker(
                name,
                self.breaker_config,
                store=self.breaker_store,
                clock=self.clock,
                listeners=self.breaker_listeners,
            )
            for name in names
        ]
        windows = [
            self._window(name, c, i)
            for i, (name, c) in enumerate(zip(names, self.candidates, strict=True))
        ]
        return _Lineup(names, breakers, windows)

    @property
    def _names(self) -> list[str]:
        return self._lineup.names

    @property
    def _breakers(self) -> list[CircuitBreaker]:
        return self._lineup.breakers

    @property
    def _windows(self) -> list[int | None]:
        return self._lineup.windows

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """Each candidate's breaker, by candidate name."""
        return dict(zip(self._names, self._breakers, strict=True))

    def health(self) -> dict[str, dict[str, Any]]:
        """Each candidate's breaker snapshot, by candidate name, in order."""
        return {name: b.snapshot().to_dict() for name, b in self.breakers.items()}

    def _window(self, name: str, candidate: Runnable[Any, Any], index: int) -> int | None:
        if name in self.context_windows:
            return self.context_windows[name]
        registry = self.registry
        if registry is None:
            try:
                registry = importlib.import_module("oscar_langchain.models").default_registry()
            except ImportError:
                return None
        model = _candidate_name(candidate, index)
        try:
            return int(registry.get(model).context_window)
        except UnknownModelError:
            return None

    def _plan(self) -> FailoverPlan:
        lineup = self._lineup
        return FailoverPlan(
            lineup.names,
            breakers=lineup.breakers,
            windows=lineup.windows,
            retry=self.retry,
            clock=lineup.clock,
        )

    def _config(
        self,
        config: RunnableConfig,
        run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun,
        attempt: Attempt,
    ) -> RunnableConfig:
        """The attempt's child config: tagged and with metadata naming candidate and attempt."""
        meta = {"oscar.candidate": attempt.name, "oscar.attempt": attempt.number}
        return child_config(
            config, run_manager, tag=self._lineup.tags[attempt.index], metadata=meta
        )

    def _finish(
        self,
        answer: Answer[Any],
        plan: FailoverPlan,
        run_manager: CallbackManagerForChainRun | AsyncCallbackManagerForChainRun,
    ) -> tuple[Any, dict[str, Any] | None]:
        """The output, and the run's attributes (``None`` when no handler listens).

        A message output gets the route in a copy of its ``response_metadata``.
        """
        output, attempt = answer.output, answer.attempt
        message = isinstance(output, BaseMessage)
        traced = bool(run_manager.handlers or run_manager.inheritable_handlers)  # anyone there?
        if not (message or traced):
            return output, None  # nobody to tell: skip the route record altogether
        meta = plan.metadata(attempt)
        if message:
            merged = {**output.response_metadata, **meta}
            output = output.model_copy(update={"response_metadata": merged})
        if not traced:
            return output, None
        return output, {
            "oscar.route": " > ".join(plan.route.tried),
            "oscar.candidate": attempt.name,
            "oscar.breaker.state": self._lineup.breakers[attempt.index].last_state.value,
            "oscar.attempts": meta["oscar.attempts"],
        }

    def _timeout_error(self, attempt: Attempt) -> AttemptTimeoutError:
        return AttemptTimeoutError(f"{attempt.name} took longer than {self.attempt_timeout}s")

    # -- invoke ------------------------------------------------------------------
    def _call(
        self,
        input: Any,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        kwargs: dict[str, Any],
        attempt: Attempt,
    ) -> Any:
        candidate = self.candidates[attempt.index]
        child = self._config(config, run_manager, attempt)
        if self.attempt_timeout is None:
            return candidate.invoke(input, child, **kwargs)
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="oscar-failover")
        context = contextvars.copy_context()
        future = pool.submit(context.run, partial(candidate.invoke, input, child, **kwargs))
        try:
            return future.result(timeout=self.attempt_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise self._timeout_error(attempt) from None
        finally:
            pool.shutdown(wait=False)

    async def _acall(
        self,
        input: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        kwargs: dict[str, Any],
        attempt: Attempt,
    ) -> Any:
        call = self.candidates[attempt.index].ainvoke(
            input, self._config(config, run_manager, attempt), **kwargs
        )
        return await self._within(call, attempt)

    async def _within(self, call: Awaitable[Any], attempt: Attempt) -> Any:
        """Await ``call``, bounded by ``attempt_timeout``."""
        if self.attempt_timeout is None:
            return await call
        try:
            return await asyncio.wait_for(call, self.attempt_timeout)
        except asyncio.TimeoutError:
            raise self._timeout_error(attempt) from None

    def _invoke(
        self,
        input: Any,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Any:
        plan = self._plan()
        answer = run_plan(plan, partial(self._call, input, run_manager, config, kwargs), self.sleep)
        output, attributes = self._finish(answer, plan, run_manager)
        if attributes is not None:
            annotate_run(run_manager, attributes)
        return output

    async def _ainvoke(
        self,
        input: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Any:
        plan = self._plan()
        answer = await arun_plan(
            plan, partial(self._acall, input, run_manager, config, kwargs), self.asleep
        )
        output, attributes = self._finish(answer, plan, run_manager)
        if attributes is not None:
            await aannotate_run(run_manager, attributes)
        return output

    # -- stream ------------------------------------------------------------------
    def _continuation(self, input: Any, partial: Any) -> Any:
        return [
            *_to_messages(input),
            AIMessage(_text(partial)),
            HumanMessage(self.continuation_prompt),
        ]

    def _after_first_chunk(
        self, plan: FailoverPlan, error: Exception, input: Any, partial: Any
    ) -> Any:
        """The next candidate's input after a mid-stream failure, or raise (per the policy)."""
        if self.stream_policy == "raise":
            raise plan.error("stream failed after its first chunk") from error
        return self._continuation(input, partial)

    def _stream(
        self,
        input: Any,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Iterator[Any]:
        yield from stream_with_failover(self, input, run_manager, config, kwargs)

    async def _astream(
        self,
        input: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        async with aclosing_stream(
            astream_with_failover(self, input, run_manager, config, kwargs)
        ) as chunks:
            async for chunk in chunks:
                yield chunk


def with_failover(
    primary: Runnable[Any, Any],
    *fallbacks: Runnable[Any, Any],
    retry: RetryPolicy | None = None,
    breaker_config: BreakerConfig | None = None,
    breaker_store: BreakerStore | None = None,
    attempt_timeout: float | None = None,
    stream_policy: Literal["raise", "continue"] = "raise",
) -> FailoverRunnable:
    """``primary`` with ``fallbacks`` behind breakers, in one line.

    Example:
        >>> from langchain_core.runnables import RunnableLambda
        >>> with_failover(RunnableLambda(lambda x: x + 1)).invoke(1)
        2
    """
    options: dict[str, Any] = {
        "attempt_timeout": attempt_timeout,
        "stream_policy": stream_policy,
        "breaker_store": breaker_store,
    }
    if retry is not None:
        options["retry"] = retry
    if breaker_config is not None:
        options["breaker_config"] = breaker_config
    return FailoverRunnable(candidates=[primary, *fallbacks], **options)
