"""The chaos server over real HTTP on 127.0.0.1, observed by the real ChatOpenAI client."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading

import pytest

from oscar_langchain.errors import ErrorKind, classify_error
from oscar_langchain.testing import (
    Action,
    ChaosServer,
    RandomActions,
    context_length,
    cut_stream,
    echo,
    hang,
    malformed,
    ok,
    proxy,
    rate_limit,
    reset,
    server_error,
    slow,
    unauthorized,
)
from tests._support import backends

chaos_server = backends.chaos_server  # fixture (the shared conftest registers it later)

pytest.importorskip("langchain_openai")

# (action, expected kind, expected status code)
FAULTS: list[tuple[str, Action, ErrorKind, int | None]] = [
    ("500", server_error(500), ErrorKind.SERVER, 500),
    ("502", server_error(502), ErrorKind.SERVER, 502),
    ("503", server_error(503), ErrorKind.SERVER, 503),
    ("429", rate_limit(2), ErrorKind.RATE_LIMIT, 429),
    ("400-context", context_length(), ErrorKind.CONTEXT_LENGTH, 400),
    ("401", unauthorized(), ErrorKind.AUTH, 401),
    ("hang", hang(30), ErrorKind.TIMEOUT, None),
    ("slow-past-timeout", slow(30), ErrorKind.TIMEOUT, None),
    ("reset", reset(), ErrorKind.CONNECTION, None),
    ("cut", cut_stream(2), ErrorKind.CONNECTION, None),
]


def _collect(model, mode: str, prompt: str = "hi there"):
    if mode == "invoke":
        return model.invoke(prompt)
    chunks = list(model.stream(prompt))
    result = chunks[0]
    for chunk in chunks[1:]:
        result = result + chunk
    return result


@pytest.mark.parametrize("mode", ["invoke", "stream"])
@pytest.mark.parametrize(("name", "action", "kind", "status"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_is_classified_as_expected(chaos_server, mode, name, action, kind, status):
    chaos_server.script(action)
    model = chaos_server.chat_model(timeout=0.5)
    with pytest.raises(Exception) as info:
        _collect(model, mode)
    verdict = classify_error(info.value)
    assert verdict.kind is kind, f"{name}: {type(info.value).__name__}: {info.value}"
    assert verdict.status_code == status
    if kind is ErrorKind.RATE_LIMIT:
        assert verdict.retry_after == 2.0
    # the server saw exactly the one request (no client retries: max_retries=0)
    assert [r.action for r in chaos_server.chat_requests] == [action]


@pytest.mark.parametrize(("name", "action", "kind", "status"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_fault_is_classified_as_expected_async(chaos_server, name, action, kind, status):
    chaos_server.script(action)
    with pytest.raises(Exception) as info:
        await chaos_server.chat_model(timeout=0.5).ainvoke("hi")
    assert classify_error(info.value).kind is kind


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_malformed_json_is_an_unexplained_failure(chaos_server, mode):
    # No ErrorKind says "malformed response": the client raises a bare json.JSONDecodeError,
    # which the classifier calls UNKNOWN -- not retried, but counted against a breaker.
    chaos_server.script(malformed())
    with pytest.raises(json.JSONDecodeError) as info:
        _collect(chaos_server.chat_model(), mode)
    verdict = classify_error(info.value)
    assert verdict.kind is ErrorKind.UNKNOWN
    assert verdict.counts_as_failure and not verdict.retryable


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_answers_with_usage(chaos_server, mode):
    chaos_server.script(ok("hello from chaos"), slow(0.01, then=echo()))
    model = chaos_server.chat_model()
    first = _collect(model, mode, "one two three")
    second = _collect(model, mode, "echo me please")
    assert first.content == "hello from chaos"
    assert second.content == "echo me please"
    assert first.usage_metadata["input_tokens"] == 3
    assert first.usage_metadata["output_tokens"] == 3
    assert second.usage_metadata["total_tokens"] == 6


def test_max_tokens_truncates_with_finish_reason_length(chaos_server):
    chaos_server.script(ok("a b c d e f"))
    reply = chaos_server.chat_model(max_tokens=2).invoke("x")
    assert reply.content == "a b"
    assert reply.response_metadata["finish_reason"] == "length"


def test_script_runs_in_order_then_default(chaos_server):
    chaos_server.script(server_error(503), ok("second"))
    chaos_server.set_default(ok("default"))
    model = chaos_server.chat_model()
    with pytest.raises(Exception) as info:
        model.invoke("1")
    assert classify_error(info.value).kind is ErrorKind.SERVER
    assert model.invoke("2").content == "second"
    assert model.invoke("3").content == "default"
    assert chaos_server.pending == 0
    assert [r.body["messages"][0]["content"] for r in chaos_server.chat_requests] == ["1", "2", "3"]


def test_client_retries_are_all_recorded_and_retry_after_is_sent(chaos_server):
    chaos_server.script(rate_limit(0), server_error(500), ok("third time lucky"))
    reply = chaos_server.chat_model(max_retries=2).invoke("x")
    assert reply.content == "third time lucky"
    assert [r.action.kind for r in chaos_server.chat_requests] == ["error", "error", "ok"]
    assert chaos_server.chat_requests[1].headers["x-stainless-retry-count"] == "1"


def test_random_actions_are_reproducible_over_http():
    def kinds(seed: int) -> list[str]:
        picker = RandomActions([(ok(), 0.5), (server_error(500), 0.5)], seed=seed)
        with ChaosServer(default=picker) as server:
            model = server.chat_model()
            for _ in range(12):
                with contextlib.suppress(Exception):
                    model.invoke("x")
            return [r.action.kind for r in server.chat_requests]

    first = kinds(3)
    assert first == kinds(3)
    assert set(first) == {"ok", "error"}


def test_health_models_and_unknown_paths(chaos_server):
    conn = http.client.HTTPConnection("127.0.0.1", chaos_server.port, timeout=5)
    conn.request("GET", "/health")
    assert conn.getresponse().read() == b'{"status": "ok"}'
    chaos_server.healthy = False
    conn.request("GET", "/health")
    response = conn.getresponse()
    response.read()
    assert response.status == 503
    conn.request("GET", "/v1/models")
    assert json.loads(conn.getresponse().read())["data"][0]["id"] == "chaos"
    conn.request("GET", "/nope")
    response = conn.getresponse()
    response.read()
    assert response.status == 404
    conn.request("POST", "/v1/embeddings", b"{}", {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    assert response.status == 404
    conn.request("POST", "/v1/chat/completions", b"not json", {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    assert response.status == 400
    conn.close()
    assert [r.path for r in chaos_server.requests][:3] == ["/health", "/health", "/v1/models"]


def test_binds_loopback_only(chaos_server):
    assert chaos_server.base_url.startswith("http://127.0.0.1:")
    assert chaos_server._httpd.server_address[0] == "127.0.0.1"


def test_requests_are_recorded_thread_safely(chaos_server):
    model = chaos_server.chat_model()
    replies = model.batch([f"q{i}" for i in range(8)], config={"max_concurrency": 8})
    assert {r.content for r in replies} == {"ok"}
    seen = sorted(r.body["messages"][0]["content"] for r in chaos_server.chat_requests)
    assert seen == sorted(f"q{i}" for i in range(8))


def test_stop_wakes_a_hanging_request_and_closes_keepalive_connections():
    server = ChaosServer([hang(600)]).start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            server.chat_model(timeout=600).invoke("x")
        except Exception as exc:  # the dropped connection
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    while not server.chat_requests:
        threading.Event().wait(0.01)
    server.stop()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert classify_error(errors[0]).kind is ErrorKind.CONNECTION
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = server.port


def test_clear_forgets_requests_and_script(chaos_server):
    chaos_server.script(server_error(500))
    sock = socket.create_connection(("127.0.0.1", chaos_server.port))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(64).startswith(b"HTTP/1.1 200")
    sock.close()
    assert chaos_server.requests
    chaos_server.clear()
    assert chaos_server.requests == [] and chaos_server.pending == 0


def test_proxy_without_upstream_is_a_502(chaos_server):
    chaos_server.script(proxy())
    with pytest.raises(Exception) as info:
        chaos_server.chat_model().invoke("x")
    assert classify_error(info.value).status_code == 502


def test_proxy_relays_upstream_answers_and_errors():
    with ChaosServer([ok("from upstream")]) as upstream:
        front = ChaosServer(upstream=upstream.base_url).start()
        try:
            model = front.chat_model()
            assert model.invoke("x").content == "from upstream"
            upstream.script(rate_limit(3))
            with pytest.raises(Exception) as info:
                model.invoke("x")
            assert classify_error(info.value).kind is ErrorKind.RATE_LIMIT
            upstream.set_default(echo())
            front.script(cut_stream(2, then=proxy()))
            with pytest.raises(Exception) as info:
                list(model.stream("a b c d"))
            assert classify_error(info.value).kind is ErrorKind.CONNECTION
            streamed = "".join(c.content for c in model.stream("a b c d"))
            assert streamed == "a b c d"
            assert len(upstream.chat_requests) == 4
        finally:
            front.stop()


def test_proxy_to_a_dead_upstream_is_a_502():
    with ChaosServer() as upstream:
        dead = upstream.base_url
    with ChaosServer(upstream=dead) as front:
        with pytest.raises(Exception) as info:
            front.chat_model().invoke("x")
        assert classify_error(info.value).status_code == 502
