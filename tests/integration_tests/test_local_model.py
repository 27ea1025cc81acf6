"""LocalModelServer: a real llama-server with Gemma 3 270M, driven by the real ChatOpenAI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from oscar_langchain import local
from oscar_langchain.errors import ErrorKind, classify_error
from oscar_langchain.local import LocalModelServer, LocalServerError, LocalServerSettings
from oscar_langchain.testing import cut_stream, proxy, rate_limit
from tests._support import backends
from tests._support.backends import require_local_extra

# fixtures (the shared conftest registers them later)
local_model_server = backends.local_model_server
local_model_server_factory = backends.local_model_server_factory
chaos_proxy = backends.chaos_proxy

pytestmark = pytest.mark.local_model

ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    """The process no longer exists at all (not even as an unreaped zombie)."""
    return not psutil.pid_exists(pid)


def _wait_gone(pid: int, timeout: float = 20.0) -> bool:
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return _gone(pid)


def _usage_ok(usage) -> None:
    assert usage["input_tokens"] > 0
    assert usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_invoke_reports_usage(local_model_server):
    reply = local_model_server.chat_model(max_tokens=8).invoke("What is the capital of France?")
    assert isinstance(reply.content, str) and reply.content
    _usage_ok(reply.usage_metadata)
    assert reply.usage_metadata["output_tokens"] <= 8


async def test_ainvoke_concurrently_reports_usage(local_model_server):
    import asyncio

    model = local_model_server.chat_model(max_tokens=6)
    replies = await asyncio.gather(*(model.ainvoke(f"Count to {i}.") for i in range(3)))
    for reply in replies:
        _usage_ok(reply.usage_metadata)


def test_batch_reports_usage(local_model_server):
    replies = local_model_server.chat_model(max_tokens=6).batch(["Hi.", "Bye."])
    assert len(replies) == 2
    for reply in replies:
        _usage_ok(reply.usage_metadata)


def test_stream_reports_usage(local_model_server):
    chunks = list(local_model_server.chat_model(max_tokens=8).stream("Say hello."))
    assert len(chunks) > 2
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.content
    _usage_ok(total.usage_metadata)


def test_server_lists_its_model(local_model_server):
    import json
    import urllib.request

    with urllib.request.urlopen(local_model_server.base_url + "/models", timeout=5) as response:
        ids = [m["id"] for m in json.loads(response.read())["data"]]
    assert ids == ["gemma-3-270m"]


def test_context_overflow_is_classified_as_context_length(local_model_server):
    with pytest.raises(Exception) as info:
        local_model_server.chat_model(max_retries=0).invoke("word " * 2500)
    assert classify_error(info.value).status_code == 400
    assert classify_error(info.value).kind is ErrorKind.CONTEXT_LENGTH


def test_chaos_proxy_injects_faults_in_front_of_the_real_model(chaos_proxy):
    model = chaos_proxy.chat_model(max_tokens=6)
    reply = model.invoke("Hello")
    _usage_ok(reply.usage_metadata)
    chaos_proxy.script(rate_limit(1), cut_stream(2, then=proxy()))
    with pytest.raises(Exception) as info:
        model.invoke("Hello")
    assert classify_error(info.value).kind is ErrorKind.RATE_LIMIT
    with pytest.raises(Exception) as info:
        list(model.stream("Hello"))
    assert classify_error(info.value).kind is ErrorKind.CONNECTION
    streamed = list(model.stream("Hello"))
    assert any(c.usage_metadata for c in streamed)
    assert len(chaos_proxy.chat_requests) == 4


def test_three_servers_side_by_side_leave_no_process(local_model_server_factory):
    servers = [local_model_server_factory() for _ in range(3)]
    pids = [s.pid for s in servers]
    assert len({s.port for s in servers}) == 3
    assert all(psutil.pid_exists(pid) for pid in pids)
    replies = [s.chat_model(max_tokens=3).invoke("Hi") for s in servers]
    assert all(r.usage_metadata["output_tokens"] > 0 for r in replies)
    for server in servers:
        log = server.log_path
        server.stop()
        assert not server.running
        assert log is not None and not log.exists()
    assert all(_gone(pid) for pid in pids)
    assert not any(s in local.running_servers() for s in servers)


def test_restart_after_stop_uses_a_new_process(local_model_server_factory):
    server = local_model_server_factory()
    first = server.pid
    server.stop()
    server.start()
    assert server.pid != first and server.running
    assert server.start() is server  # already running: no second process
    server.stop()
    assert _gone(first)


# -- failures, with a fake binary (a shell script) ----------------------------------------
def _fake_binary(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "llama-server"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / local.GGUF_NAME).write_bytes(b"GGUF")
    return models


def test_binary_that_exits_gives_its_log_tail(tmp_path, fake_model, monkeypatch):
    binary = _fake_binary(tmp_path, 'echo "loading model"; echo "error: bad magic" >&2; exit 3')
    monkeypatch.setattr(local, "_binary_path", lambda: binary)
    settings = LocalServerSettings(startup_timeout=20)
    server = LocalModelServer(cache_dir=fake_model, settings=settings, log_path=tmp_path / "l.log")
    with pytest.raises(LocalServerError) as info:
        server.start()
    message = str(info.value)
    assert "exited with code 3" in message
    assert "error: bad magic" in message and "loading model" in message
    assert info.value.log_path is not None and info.value.log_path.exists()
    assert not server.running


def test_binary_that_never_gets_healthy_is_killed(tmp_path, fake_model, monkeypatch):
    pid_file = tmp_path / "pid"
    binary = _fake_binary(tmp_path, f'echo $$ > {pid_file}; echo "still loading"; exec sleep 600')
    monkeypatch.setattr(local, "_binary_path", lambda: binary)
    settings = LocalServerSettings(startup_timeout=1.0)
    with pytest.raises(LocalServerError, match="did not become healthy") as info:
        LocalModelServer(cache_dir=fake_model, settings=settings, log_path=tmp_path / "l").start()
    assert "still loading" in info.value.tail
    assert _wait_gone(int(pid_file.read_text()))


def test_port_clash_is_retried_on_another_port(tmp_path, fake_model, monkeypatch):
    count = tmp_path / "count"
    script = f'echo x >> {count}; echo "couldn\'t bind HTTP server"; exit 1'
    binary = _fake_binary(tmp_path, script)
    monkeypatch.setattr(local, "_binary_path", lambda: binary)
    with pytest.raises(LocalServerError, match="couldn't bind"):
        LocalModelServer(cache_dir=fake_model, log_path=tmp_path / "l.log").start()
    assert len(count.read_text().splitlines()) == 3
    count.unlink()
    with pytest.raises(LocalServerError):
        LocalModelServer(cache_dir=fake_model, port=54321, log_path=tmp_path / "m.log").start()
    assert len(count.read_text().splitlines()) == 1


# -- the process never outlives its owner ---------------------------------------------------
OWNER = textwrap.dedent(
    """
    import sys, time
    from oscar_langchain.local import LocalModelServer
    server = LocalModelServer(log_path=sys.argv[1]).start()
    print(server.pid, flush=True)
    {tail}
    """
)


def _owner(tail: str, log: Path) -> tuple[subprocess.Popen[str], int]:
    require_local_extra()
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER.format(tail=tail), str(log)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"owner failed to start a server: {line!r}"
    return proc, int(line)


@pytest.mark.parametrize(
    ("how", "tail"),
    [
        ("interpreter exit", "pass"),
        ("SIGTERM", "time.sleep(600)"),
        ("Ctrl-C", "time.sleep(600)"),
        ("SIGKILL", "time.sleep(600)"),
    ],
)
def test_server_dies_with_its_owner(how, tail, tmp_path):
    owner, pid = _owner(tail, tmp_path / "server.log")
    assert psutil.pid_exists(pid)
    if how == "SIGTERM":
        owner.send_signal(signal.SIGTERM)
    elif how == "Ctrl-C":
        owner.send_signal(signal.SIGINT)
    elif how == "SIGKILL":
        owner.kill()
    owner.wait(timeout=30)
    assert owner.stdout is not None
    owner.stdout.close()
    assert _wait_gone(pid), f"llama-server {pid} outlived its owner after {how}"


def test_demo_section_against_the_real_model(local_model_server):
    from oscar_langchain.demo.context import DemoContext
    from oscar_langchain.demo.local import run

    lines: list[str] = []
    ctx = DemoContext(
        corpus=[],
        questions=[],
        embeddings=None,  # type: ignore[arg-type]
        chat_model=lambda i, **kw: local_model_server.chat_model(**kw),
        out=lines.append,
    )
    run(ctx)
    text = "\n".join(lines)
    assert "A: " in text and "usage: " in text
    assert "-> rate_limit, retry after 2s" in text
    assert "-> connection" in text
    assert "the chaos server saw 3 requests" in text
