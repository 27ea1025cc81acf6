"""The chaos server's pure parts: actions, random picking, OpenAI wire format."""

from __future__ import annotations

import json
import threading

import pytest

from oscar_langchain.errors import ConfigurationError
from oscar_langchain.testing import (
    Action,
    ChaosServer,
    RandomActions,
    context_length,
    cut_stream,
    echo,
    error_action,
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
from oscar_langchain.testing.actions import error_body
from oscar_langchain.testing.openai_format import (
    answer_text,
    completion_body,
    last_user_text,
    prompt_words,
    sse_chunks,
)


def test_helpers_build_the_expected_actions():
    assert ok("x") == Action("ok", content="x")
    assert echo().kind == "echo" and proxy().kind == "proxy"
    assert server_error(502).status == 502
    assert rate_limit(2).retry_after == 2.0 and rate_limit(None).retry_after is None
    assert context_length().error_code == "context_length_exceeded"
    assert unauthorized().status == 401
    assert hang(3).hang_seconds == 3.0
    assert reset().kind == "reset" and malformed().kind == "malformed"
    assert slow(1.5).delay == 1.5 and slow(1.5, then=echo()).kind == "echo"
    assert cut_stream(3).cut_after == 3 and cut_stream(0, then=proxy()).kind == "proxy"
    assert error_action(418, code="teapot").error_code == "teapot"
    assert rate_limit(2).answers is False and ok().answers is True


@pytest.mark.parametrize(
    ("action", "label"),
    [
        (ok(), "ok"),
        (rate_limit(2), "error 429 rate_limit_exceeded (retry after 2s)"),
        (server_error(503), "error 503"),
        (hang(5), "hang 5s"),
        (slow(0.5, then=cut_stream(2)), "ok(cut after 2, delay 0.5s)"),
    ],
)
def test_describe(action, label):
    assert action.describe() == label


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Action("explode"), "kind"),  # type: ignore[arg-type]
        (lambda: Action("error", status=200), "status"),
        (lambda: Action(delay=-1), "delay"),
        (lambda: Action("hang", hang_seconds=0), "hang_seconds"),
        (lambda: Action("error", status=429, retry_after=-1), "retry_after"),
        (lambda: Action("reset", cut_after=1), "cut_after"),
        (lambda: Action("ok", cut_after=-1), "cut_after"),
        (lambda: server_error(404), "status"),
        (lambda: RandomActions([]), "choices"),
        (lambda: RandomActions([(ok(), -1.0)]), "choices"),
        (lambda: RandomActions([(ok(), 0.0)]), "choices"),
        (lambda: ChaosServer(upstream="127.0.0.1:80"), "upstream"),
        (lambda: ChaosServer(port=70000), "port"),
    ],
)
def test_validation_names_the_field(build, field):
    with pytest.raises(ConfigurationError) as info:
        build()
    assert info.value.field == field


def test_error_body_has_openai_shape():
    body = json.loads(error_body(context_length(4096)))
    assert body["error"]["code"] == "context_length_exceeded"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "messages"
    assert "maximum context length is 4096 tokens" in body["error"]["message"]
    assert json.loads(error_body(server_error()))["error"]["param"] is None


def test_random_actions_are_seeded_and_weighted():
    choices = [(ok(), 0.8), (server_error(), 0.2)]
    a, b = RandomActions(choices, seed=1), RandomActions(choices, seed=1)
    draws = [a.next().kind for _ in range(500)]
    assert draws == [b.next().kind for _ in range(500)]
    assert 300 < draws.count("ok") < 480  # 0.8 of 500 = 400
    assert RandomActions([(ok(), 0.0), (reset(), 1.0)]).next().kind == "reset"


def test_random_actions_are_thread_safe():
    picker = RandomActions([(ok(), 1.0), (reset(), 1.0)], seed=0)
    seen: list[str] = []

    def draw() -> None:
        for _ in range(200):
            seen.append(picker.next().kind)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 800 and set(seen) == {"ok", "reset"}


def test_server_script_queue_without_network():
    server = ChaosServer([ok("a")], default=RandomActions([(reset(), 1.0)]))
    server.script(server_error(500)).script(echo())
    assert server.pending == 3
    assert [server._next_action().kind for _ in range(4)] == ["ok", "error", "echo", "reset"]
    server.set_default(ok("d"))
    assert server._next_action().content == "d"
    server.script(ok())
    server.clear()
    assert server.pending == 0 and server.requests == []
    assert ChaosServer(upstream="http://127.0.0.1:1/v1/")._next_action() == proxy()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url


# -- wire format -------------------------------------------------------------------------
REQUEST = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "last question here"},
    ],
}


def test_last_user_text_and_prompt_words():
    assert last_user_text(REQUEST) == "last question here"
    assert last_user_text({"messages": [REQUEST["messages"][1]]}) == "first"
    assert last_user_text({"messages": [{"role": "user", "content": 3}]}) == ""
    assert last_user_text({}) == ""
    assert prompt_words(REQUEST) == 2 + 1 + 1 + 3


def test_answer_text_honours_max_tokens():
    assert answer_text({}, "a b c") == ("a b c", "stop")
    assert answer_text({"max_tokens": 2}, "a b c") == ("a b", "length")
    assert answer_text({"max_completion_tokens": 1}, "a b c") == ("a", "length")
    assert answer_text({"max_tokens": 5}, "a b c") == ("a b c", "stop")


def test_completion_body():
    body = completion_body(REQUEST, "the answer", created=7)
    assert body["object"] == "chat.completion" and body["created"] == 7
    assert body["model"] == "m"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "the answer"}
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


def test_sse_chunks_reassemble_and_carry_usage_when_asked():
    events = sse_chunks({**REQUEST, "stream_options": {"include_usage": True}}, "x y z", created=1)
    assert events[-1] == b"data: [DONE]\n\n"
    payloads = [json.loads(e[len(b"data: ") :]) for e in events[:-1]]
    text = "".join(p["choices"][0]["delta"].get("content", "") for p in payloads if p["choices"])
    assert text == "x y z"
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert payloads[-2]["choices"][0]["finish_reason"] == "stop"
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 3


def test_sse_chunks_without_usage_and_empty_answer():
    events = sse_chunks({"messages": []}, "", created=1)
    payloads = [json.loads(e[len(b"data: ") :]) for e in events[:-1]]
    assert all(p["choices"] for p in payloads)  # no usage chunk
    assert len(payloads) == 2  # role + finish


def test_split_sse_events_regroups_lines_into_events():
    from oscar_langchain.testing.openai_format import split_sse_events

    lines = [b"data: 1\r\n", b"\r\n", b"\n", b"event: x\n", b"data: 2\n", b"\n", b"data: 3\n"]
    assert list(split_sse_events(lines)) == [
        b"data: 1\n\n",
        b"event: x\ndata: 2\n\n",
        b"data: 3\n\n",
    ]
