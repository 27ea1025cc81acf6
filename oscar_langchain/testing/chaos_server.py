"""An OpenAI-compatible HTTP server on 127.0.0.1 that fails on purpose.

Point any OpenAI client (``ChatOpenAI(base_url=server.base_url)``) at a
:class:`ChaosServer` and script what each chat-completion request gets: an answer,
an HTTP error in OpenAI's shape, a slow answer, a hang, a TCP reset, a stream cut
half-way, broken JSON, or the answer of a real upstream server (the local model)
with the same faults injected on the way. Every request is recorded. Standard
library only: no extra is needed except ``langchain-openai`` for :meth:`chat_model`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.testing.actions import Action, RandomActions, error_body, ok, proxy
from oscar_langchain.testing.openai_format import (
    completion_body,
    last_user_text,
    split_sse_events,
    sse_chunks,
)

__all__ = ["ChaosServer", "RecordedRequest"]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_MALFORMED_JSON = b'{"id": "chatcmpl-chaos", "object": "chat.completion", "choices": [{"mess'


@dataclass(frozen=True)
class RecordedRequest:
    """One request the chaos server received.

    Attributes:
        method: HTTP method.
        path: request path (``/v1/chat/completions``...).
        headers: request headers, names lower-cased.
        body: the JSON body (``None`` if absent or not JSON).
        action: what the server did with it (chat completions only).
        received_at: ``time.monotonic()`` when it arrived.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    action: Action | None
    received_at: float

    @property
    def stream(self) -> bool:
        """Whether the request asked for a streamed answer."""
        return isinstance(self.body, Mapping) and bool(self.body.get("stream"))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    chaos: ChaosServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("chaos server: error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    # -- plumbing ---------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.chaos._track(self.connection, add=True)

    def finish(self) -> None:
        self.server.chaos._track(self.connection, add=False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("chaos server: " + format, *args)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self, *, rst: bool) -> None:
        """Close the connection now; with ``rst`` the peer gets a TCP reset, not a FIN."""
        self.close_connection = True
        if rst:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()

    # -- routes -----------------------------------------------------------------------
    def do_GET(self) -> None:
        chaos = self.server.chaos
        chaos._record(self, None, None)
        if self.path == "/health":
            healthy = chaos.healthy
            body = {"status": "ok"} if healthy else {"status": "unavailable"}
            self._send(200 if healthy else 503, json.dumps(body).encode())
        elif self.path.rstrip("/") == "/v1/models":
            model = {"id": chaos.model, "object": "model", "created": 0, "owned_by": "chaos"}
            self._send(200, json.dumps({"object": "list", "data": [model]}).encode())
        else:
            self._send(404, b'{"error": {"message": "not found", "type": "not_found"}}')

    def do_POST(self) -> None:
        chaos = self.server.chaos
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            request = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            request = None
        if self.path.rstrip("/") != "/v1/chat/completions":
            chaos._record(self, request, None)
            self._send(404, b'{"error": {"message": "not found", "type": "not_found"}}')
            return
        action = chaos._next_action()
        chaos._record(self, request, action)
        if not isinstance(request, Mapping):
            self._send(400, b'{"error": {"message": "body is not JSON", "type": "invalid_json"}}')
            return
        try:
            self._act(action, request, raw)
        except OSError:
            self.close_connection = True  # the client went away; nothing to tell it

    def _act(self, action: Action, request: Mapping[str, Any], raw: bytes) -> None:
        chaos = self.server.chaos
        if action.delay and chaos._stopping.wait(action.delay):
            self._drop(rst=False)
            return
        stream = bool(request.get("stream"))
        if action.kind == "error":
            headers = {}
            if action.retry_after is not None:
                headers["Retry-After"] = f"{action.retry_after:g}"
            self._send(action.status, error_body(action), headers)
        elif action.kind == "hang":
            chaos._stopping.wait(action.hang_seconds)
            self._drop(rst=False)
        elif action.kind == "reset":
            self._drop(rst=True)
        elif action.kind == "malformed":
            if stream:
                self._start_sse()
                self._chunk(b"data: " + _MALFORMED_JSON + b"\n\n")
                self._chunk(b"data: [DONE]\n\n")
                self._end_chunks()
            else:
                self._send(200, _MALFORMED_JSON)
        elif action.kind == "proxy":
            self._proxy(action, raw, stream)
        else:
            content = action.content if action.kind == "ok" else last_user_text(request)
            created = int(time.time())
            if stream:
                self._relay_stream(iter(sse_chunks(request, content, created=created)), action)
            else:
                body = json.dumps(completion_body(request, content, created=created)).encode()
                self._relay_body(200, body, action)

    # -- answering, possibly cut ------------------------------------------------------
    def _relay_body(self, status: int, body: bytes, action: Action) -> None:
        if action.cut_after is None:
            self._send(status, body)
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self._drop(rst=False)

    def _relay_stream(self, events: Iterator[bytes], action: Action) -> None:
        self._start_sse()
        for sent, event in enumerate(events):
            if action.cut_after is not None and sent >= action.cut_after:
                self._drop(rst=False)
                return
            self._chunk(event)
        self._end_chunks()

    def _proxy(self, action: Action, raw: bytes, stream: bool) -> None:
        chaos = self.server.chaos
        if chaos.upstream is None:
            self._send(502, b'{"error": {"message": "no upstream", "type": "server_error"}}')
            return
        target = urlsplit(chaos.upstream)
        conn = http.client.HTTPConnection(target.hostname or LOOPBACK, target.port or 80, 600)
        try:
            headers = {"Content-Type": "application/json"}
            auth = self.headers.get("Authorization")
            if auth:
                headers["Authorization"] = auth
            conn.request("POST", target.path.rstrip("/") + "/chat/completions", raw, headers)
            upstream = conn.getresponse()
            if stream and upstream.status == 200:
                self._relay_stream(split_sse_events(upstream), action)
            else:
                self._relay_body(upstream.status, upstream.read(), action)
        except (OSError, http.client.HTTPException) as exc:
            logger.debug("chaos server: upstream failed: %r", exc)
            body = {"error": {"message": f"chaos upstream failed: {exc!r}", "type": "server_error"}}
            self._send(502, json.dumps(body).encode())
        finally:
            conn.close()


class ChaosServer:
    """An OpenAI-compatible server on 127.0.0.1 whose answers are scripted faults.

    Each ``POST /v1/chat/completions`` takes the next action of the script (a queue);
    when the script is empty it gets ``default``: one action, or a :class:`RandomActions`
    drawing by seeded probability. ``GET /health`` (503 when ``healthy`` is false) and
    ``GET /v1/models`` always answer. With ``upstream`` (an OpenAI base URL such as the
    local model's), the default becomes :func:`proxy` and faults wrap the real answers.

    Args:
        script: actions for the first requests, in order.
        default: what requests get once the script is used up (default :func:`ok`, or
            :func:`proxy` when ``upstream`` is set).
        upstream: base URL (``http://127.0.0.1:PORT/v1``) that ``proxy`` forwards to.
        port: port to bind on 127.0.0.1 (0: any free port).
        model: the model id the server lists.

    Typical use (real HTTP, so not run as a doctest)::

        with ChaosServer([rate_limit(2), ok("hi")]) as server:
            model = server.chat_model()          # ChatOpenAI, max_retries=0
            model.invoke("hello")                # raises openai.RateLimitError
            model.invoke("hello").content        # 'hi'
            len(server.chat_requests)            # 2

    Example:
        >>> from oscar_langchain.testing import ChaosServer, ok, rate_limit
        >>> server = ChaosServer([rate_limit(2), ok("hi")])
        >>> server.pending, server.upstream is None
        (2, True)
    """

    def __init__(
        self,
        script: Iterable[Action] = (),
        *,
        default: Action | RandomActions | None = None,
        upstream: str | None = None,
        port: int = 0,
        model: str = "chaos",
    ) -> None:
        if upstream is not None and not upstream.startswith(("http://", "https://")):
            raise ConfigurationError("upstream", f"must be an http(s) URL, got {upstream!r}")
        if not 0 <= port <= 65535:
            raise ConfigurationError("port", f"must be 0-65535, got {port}")
        self.upstream = upstream.rstrip("/") if upstream else None
        self.model = model
        self.healthy = True
        self._default: Action | RandomActions = default or (proxy() if upstream else ok())
        self._script: deque[Action] = deque(script)
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._requested_port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> ChaosServer:
        """Bind 127.0.0.1 and serve in a background thread (idempotent)."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((LOOPBACK, self._requested_port), _Handler)
        httpd.chaos = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = f"chaos-server-{self.port}"
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake hanging handlers and close open connections (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ChaosServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (raises if the server is not running)."""
        if self._httpd is None:
            raise RuntimeError("the chaos server is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no ``/v1``)."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    # -- scripting --------------------------------------------------------------------
    def script(self, *actions: Action) -> ChaosServer:
        """Append actions to the queue served to the next requests."""
        with self._lock:
            self._script.extend(actions)
        return self

    def set_default(self, behaviour: Action | RandomActions) -> None:
        """What requests get once the script is empty."""
        with self._lock:
            self._default = behaviour

    @property
    def pending(self) -> int:
        """How many scripted actions are still queued."""
        with self._lock:
            return len(self._script)

    def _next_action(self) -> Action:
        with self._lock:
            if self._script:
                return self._script.popleft()
            default = self._default
        return default if isinstance(default, Action) else default.next()

    # -- records ----------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The chat-completion requests received so far."""
        return [r for r in self.requests if r.action is not None]

    def clear(self) -> None:
        """Forget the recorded requests and the queued script."""
        with self._lock:
            self._requests.clear()
            self._script.clear()

    def _record(self, handler: _Handler, body: Any, action: Action | None) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        entry = RecordedRequest(
            handler.command, handler.path, headers, body, action, time.monotonic()
        )
        with self._lock:
            self._requests.append(entry)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- client -----------------------------------------------------------------------
    def chat_model(self, **kwargs: Any) -> Any:
        """A ``ChatOpenAI`` on this server: no retries, 10 s time-out, usage on streams.

        Keyword arguments override those defaults (``timeout=0.5``, ``max_retries=2``...).
        """
        try:
            from langchain_openai import ChatOpenAI
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "ChaosServer.chat_model needs langchain-openai: "
                "pip install 'oscar-langchain[server]'"
            ) from exc
        params: dict[str, Any] = {
            "model": self.model,
            "base_url": self.base_url,
            "api_key": "chaos",
            "max_retries": 0,
            "timeout": 10.0,
            "stream_usage": True,
        }
        params.update(kwargs)
        return ChatOpenAI(**params)
