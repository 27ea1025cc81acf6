"""Render finished OpenTelemetry spans as an indented tree (for demos and debugging).

Duck-typed on the SDK's ``ReadableSpan`` (``name``, ``context.span_id``, ``parent``,
``start_time``/``end_time`` in ns, ``status``, ``attributes``), so it reads what an
``InMemorySpanExporter`` collected.

Example:
    >>> from langchain_core.runnables import RunnableLambda
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    ...     InMemorySpanExporter,
    ... )
    >>> from oscar_langchain.callbacks import OscarTracer
    >>> exporter = InMemorySpanExporter()
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(SimpleSpanProcessor(exporter))
    >>> chain = RunnableLambda(lambda x: x).with_config(run_name="step")
    >>> _ = chain.invoke(1, {"callbacks": [OscarTracer(provider)]})
    >>> print(format_span_tree(exporter.get_finished_spans(), durations=False))
    step
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["format_span_tree"]

_SHOWN = (
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "error.type",
)

_HIDDEN = frozenset({"oscar.run.type", "oscar.input", "oscar.output"})


def _label(span: Any, durations: bool) -> str:
    parts = [str(span.name)]
    if durations and span.start_time is not None and span.end_time is not None:
        parts.append(f"{(span.end_time - span.start_time) / 1e6:.2f} ms")
    attributes = dict(span.attributes or {})
    shown = [f"{k.rsplit('.', 1)[-1]}={attributes[k]}" for k in _SHOWN if k in attributes]
    shown += [
        f"{k}={v}" for k, v in attributes.items() if k.startswith("oscar.") and k not in _HIDDEN
    ]
    if shown:
        parts.append("[" + ", ".join(shown) + "]")
    code = getattr(getattr(span, "status", None), "status_code", None)
    if code is not None and code.name == "ERROR":
        parts.append("ERROR")
    return "  ".join(parts)


def format_span_tree(spans: Iterable[Any], *, durations: bool = True) -> str:
    """The spans as an indented tree, roots and siblings in start order.

    Args:
        spans: finished spans (e.g. ``InMemorySpanExporter().get_finished_spans()``).
        durations: show each span's duration.
    """
    spans = list(spans)
    ids = {s.context.span_id for s in spans}
    children: dict[int | None, list[Any]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)
    lines: list[str] = []

    def walk(siblings: Sequence[Any], prefix: str, root: bool) -> None:
        ordered = sorted(siblings, key=lambda s: s.start_time or 0)
        for i, span in enumerate(ordered):
            last = i == len(ordered) - 1
            branch = "" if root else ("└─ " if last else "├─ ")
            lines.append(prefix + branch + _label(span, durations))
            extension = "" if root else ("   " if last else "│  ")
            walk(children.get(span.context.span_id, []), prefix + extension, False)

    walk(children.get(None, []), "", True)
    return "\n".join(lines)
