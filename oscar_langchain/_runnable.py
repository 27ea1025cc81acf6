"""Callback and config bookkeeping for oscar's Runnable shells, written once.

Every wrapper in this package (failover, router, cache, ensemble...) derives from
:class:`OscarRunnable` and implements only ``_invoke``/``_ainvoke`` (and optionally
``_stream``/``_astream``). This base opens the run with LangChain's run manager,
hands the hooks the call-time keyword arguments (``invoke(x, stop=[...])``,
``bind(stop=[...])``) as ``Runnable._call_with_config`` hands them to its function,
and :func:`child_config` gives the wrapped runnables a config whose callbacks are
the run's children, so ``parent_run_id`` nests correctly for invoke, ainvoke, batch
and stream alike (langchain-core's own ``fallbacks.py`` repeats this dance six times).

:func:`annotate_run` attaches attributes (``oscar.route``, ``oscar.cache.hit``...) to
the current run; oscar's tracer turns them into span attributes.

Example:
    >>> class AddOne(OscarRunnable[int, int]):
    ...     def _invoke(self, input, run_manager, config, **kwargs):
    ...         return input + 1
    ...     async def _ainvoke(self, input, run_manager, config, **kwargs):
    ...         return input + 1
    >>> AddOne().invoke(1), AddOne().batch([1, 2]), list(AddOne().stream(5))
    (2, [2, 3], [6])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from contextvars import Context, copy_context
from typing import Any, ClassVar, Generic, TypeVar

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForChainRun,
    CallbackManager,
    CallbackManagerForChainRun,
)
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import (
    _set_config_context,
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)
from langchain_core.runnables.utils import coro_with_context
from pydantic import ConfigDict

__all__ = [
    "ANNOTATION_EVENT",
    "OscarRunnable",
    "aannotate_run",
    "aclosing_stream",
    "annotate_run",
    "child_config",
    "child_manager",
    "reject_call_kwargs",
]

Input = TypeVar("Input")
Output = TypeVar("Output")
T = TypeVar("T")

ANNOTATION_EVENT = "oscar.annotate"
"""Name of the custom callback event that carries run attributes to the tracer."""

RunManager = CallbackManagerForChainRun | AsyncCallbackManagerForChainRun


_ENSURED_KEYS = frozenset(("tags", "metadata", "callbacks", "recursion_limit", "configurable"))


def _metadata_copy(metadata: Mapping[str, Any]) -> dict[str, Any]:
    copied = dict(metadata)
    if "lc_versions" in copied and isinstance(copied["lc_versions"], Mapping):
        copied["lc_versions"] = dict(copied["lc_versions"])
    return copied


def _merged(base: Mapping[str, Any], incoming: Mapping[str, Any]) -> dict[str, Any]:
    """``incoming`` over ``base``; ``lc_versions`` accumulates, as LangChain merges it."""
    merged = {**base, **incoming}
    old, new = base.get("lc_versions"), incoming.get("lc_versions")
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        merged["lc_versions"] = {**old, **new}
    return merged


def child_manager(
    run_manager: RunManager,
    tag: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> CallbackManager | AsyncCallbackManager:
    """``run_manager.get_child(tag)``, built directly (a third of the cost).

    ``get_child`` adds the inherited handlers, tags and metadata one by one; the
    result is the same (``tests/unit_tests/test_runnable_shell.py`` compares them).
    ``metadata`` is added to the child's (inheritable) metadata, as ``add_metadata``
    would. Run managers of other types, a tag the run already inherits, and metadata
    carrying ``lc_versions`` go through ``get_child`` and ``add_metadata`` themselves.
    """
    kind = type(run_manager)
    tags = run_manager.inheritable_tags
    if (
        (kind is not CallbackManagerForChainRun and kind is not AsyncCallbackManagerForChainRun)
        or (tag is not None and tag in tags)
        or (metadata and "lc_versions" in metadata)
    ):
        child = run_manager.get_child(tag)
        if metadata:
            child.add_metadata(dict(metadata))
        return child
    manager = CallbackManager if kind is CallbackManagerForChainRun else AsyncCallbackManager
    handlers = run_manager.inheritable_handlers
    inherited = run_manager.inheritable_metadata
    merged = {**inherited, **metadata} if metadata else inherited
    return manager(
        list(handlers),
        list(handlers),
        run_manager.run_id,
        tags=[*tags] if tag is None else [*tags, tag],
        inheritable_tags=list(tags),
        metadata=_metadata_copy(merged),
        inheritable_metadata=_metadata_copy(merged),
    )


def _with_callbacks(config: RunnableConfig, callbacks: Any) -> RunnableConfig:
    """``patch_config(config, callbacks=callbacks)`` without re-ensuring the config.

    ``config`` comes from ``ensure_config`` (directly or through a shell), so a shallow
    copy is enough: LangChain copies the mutable parts when the callee ensures it.
    Like ``patch_config``, the run name and id are dropped (they named the outer run).
    """
    if not config.keys() >= _ENSURED_KEYS:
        config = ensure_config(config)
    child = config.copy()
    child["callbacks"] = callbacks
    child.pop("run_name", None)
    child.pop("run_id", None)
    return child


def _child_context(config: RunnableConfig) -> Context:
    """A copy of the current context in which ``config`` is the child runnable config.

    What ``set_config_context`` yields (the config variable, and LangSmith's tracing
    parent when a LangChain tracer is attached), minus its generator and the resets
    on exit: the copy is dropped after the call, so there is nothing to restore.
    """
    context = copy_context()
    context.run(_set_config_context, config)
    return context


def child_config(
    config: RunnableConfig,
    run_manager: RunManager,
    tag: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> RunnableConfig:
    """Config for a runnable called from inside ``run_manager``'s run.

    The child's callbacks are ``run_manager.get_child(tag)`` carrying ``metadata``,
    so the child run (and the runs below it) have the tag and the metadata; the
    config is a shallow copy of ``config`` whose ``metadata`` is a new dict with
    ``metadata`` merged in, so the wrapped runnable reads it from its config too
    (``patch_config`` + ``merge_configs`` did the same at several times the cost,
    re-ensuring the config three times).

    Args:
        config: the config the outer run was called with.
        run_manager: the outer run's manager.
        tag: an optional tag for the child run (e.g. ``"candidate:gpt-4o"``).
        metadata: extra metadata for the child run (e.g. the attempt number).
    """
    child = _with_callbacks(config, child_manager(run_manager, tag, metadata))
    if metadata:
        # code inside the child reads config["metadata"]; it also wins over the callbacks'
        own = child["metadata"]
        child["metadata"] = (
            _merged(own, metadata) if "lc_versions" in metadata else {**own, **metadata}
        )
    return child


@asynccontextmanager
async def aclosing_stream(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close ``stream`` when the ``async with`` block ends, however it ends.

    A consumer's ``aclose()`` then reaches the inner stream at once (and with it the
    release of whatever the stream holds), not whenever the garbage collector runs.
    """
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def annotate_run(run_manager: CallbackManagerForChainRun, attributes: Mapping[str, Any]) -> None:
    """Attach ``attributes`` to the run of ``run_manager`` (seen by oscar's tracer)."""
    run_manager.get_child().on_custom_event(
        ANNOTATION_EVENT, dict(attributes), run_id=run_manager.run_id
    )


async def aannotate_run(
    run_manager: AsyncCallbackManagerForChainRun, attributes: Mapping[str, Any]
) -> None:
    """Async form of :func:`annotate_run`."""
    await run_manager.get_child().on_custom_event(
        ANNOTATION_EVENT, dict(attributes), run_id=run_manager.run_id
    )


def reject_call_kwargs(runnable: Runnable[Any, Any], kwargs: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` naming ``kwargs`` when a shell has nothing to pass them to.

    For shells that wrap no model (a splitter, a query rewriter): a call-time
    ``stop=[...]`` there is a caller's mistake, reported as Python reports it.
    """
    if kwargs:
        names = ", ".join(sorted(kwargs))
        raise TypeError(f"{runnable.get_name()} takes no call-time keyword arguments: {names}")


class OscarRunnable(RunnableSerializable[Input, Output], Generic[Input, Output]):
    """Base of oscar's Runnable shells: subclasses implement the ``_``-methods only.

    ``batch``/``abatch`` come from LangChain (each input is one ``invoke`` run with
    its own run id). Streaming defaults to one chunk holding the ``_invoke`` result;
    subclasses that can stream override ``_stream``/``_astream``.

    Call-time keyword arguments (``invoke(x, config, stop=[...])``, the same through
    ``ainvoke``, ``batch``, ``abatch``, ``stream``, ``astream`` and ``.bind(stop=[...])``)
    reach every hook as ``**kwargs``: a shell wrapping models passes them on to each
    model it calls (as a chat model would take them), a shell with nothing to pass
    them to raises with :func:`reject_call_kwargs`.

    A subclass whose ``_invoke``/``_ainvoke`` pass every inner runnable a config made
    by :func:`child_config` (never ``config`` itself, and no call without a config)
    may set ``_explicit_child_configs = True``: invoke then hands ``_invoke`` the
    run's own config and skips building the child config and context that nobody
    would read (a few microseconds per call).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    _explicit_child_configs: ClassVar[bool] = False

    def _invoke(
        self,
        input: Input,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Output:
        raise NotImplementedError

    async def _ainvoke(
        self,
        input: Input,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Output:
        raise NotImplementedError

    def _stream(
        self,
        input: Input,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Iterator[Output]:
        yield self._invoke(input, run_manager, config, **kwargs)

    async def _astream(
        self,
        input: Input,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AsyncIterator[Output]:
        yield await self._ainvoke(input, run_manager, config, **kwargs)

    # invoke/ainvoke open the run exactly as Runnable._call_with_config does, but call our
    # method directly: _call_with_config inspects the callee's signature twice per call,
    # and set_config_context costs a generator and two context resets per call.
    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        """Run on one input (LangChain ``Runnable.invoke``); ``kwargs`` reach ``_invoke``."""
        config = ensure_config(config)
        run_manager = get_callback_manager_for_config(config).on_chain_start(
            None,
            input,
            name=config.get("run_name") or self.get_name(),
            run_id=config.pop("run_id", None),
        )
        try:
            if self._explicit_child_configs:
                output = self._invoke(input, run_manager, config, **kwargs)
            else:
                child = _with_callbacks(config, child_manager(run_manager))
                output = _child_context(child).run(
                    self._invoke, input, run_manager, child, **kwargs
                )
        except BaseException as exc:
            run_manager.on_chain_error(exc)
            raise
        run_manager.on_chain_end(output)
        return output

    async def ainvoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Output:
        """Run on one input asynchronously; ``kwargs`` reach ``_ainvoke``."""
        config = ensure_config(config)
        run_manager = await get_async_callback_manager_for_config(config).on_chain_start(
            None,
            input,
            name=config.get("run_name") or self.get_name(),
            run_id=config.pop("run_id", None),
        )
        try:
            if self._explicit_child_configs:
                output: Output = await self._ainvoke(input, run_manager, config, **kwargs)
            else:
                child = _with_callbacks(config, child_manager(run_manager))
                output = await coro_with_context(
                    self._ainvoke(input, run_manager, child, **kwargs), _child_context(child)
                )
        except BaseException as exc:
            await run_manager.on_chain_error(exc)
            raise
        await run_manager.on_chain_end(output)
        return output

    def _transform(
        self,
        inputs: Iterator[Input],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Iterator[Output]:
        for item in inputs:
            yield from self._stream(item, run_manager, config, **kwargs)

    async def _atransform(
        self,
        inputs: AsyncIterator[Input],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AsyncIterator[Output]:
        async for item in inputs:
            async with aclosing_stream(
                self._astream(item, run_manager, config, **kwargs)
            ) as chunks:
                async for chunk in chunks:
                    yield chunk

    def stream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> Iterator[Output]:
        """Stream the output (LangChain ``Runnable.stream``); ``kwargs`` reach ``_stream``."""
        yield from self._transform_stream_with_config(
            iter([input]), self._transform, config, **kwargs
        )

    async def astream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> AsyncIterator[Output]:
        """Stream the output asynchronously; ``kwargs`` reach ``_astream``."""

        async def one() -> AsyncIterator[Input]:
            yield input

        stream = self._atransform_stream_with_config(one(), self._atransform, config, **kwargs)
        async with aclosing_stream(stream) as chunks:
            async for chunk in chunks:
                yield chunk
