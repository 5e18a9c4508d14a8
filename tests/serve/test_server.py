"""The live server driven by the official `openai` SDK (and raw httpx where the SDK hides the wire)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import httpx
import openai
import pytest
from fake_openai_server import unused_port

from thinktank.backends import OpenAICompatBackend, ScriptedBackend
from thinktank.engine import Engine

from .conftest import MODEL, SPECS, Gate, WordStreamBackend, serving
from .live import LiveServer

USER = [{"role": "user", "content": "what is the answer"}]


def ext(response: Any) -> dict[str, Any]:
    return response.model_extra["thinktank"]


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# --- answers ---------------------------------------------------------------------------------


def test_single_answer_with_usage_of_the_internal_call(live: LiveServer, backend: WordStreamBackend):
    response = live.client().chat.completions.create(model="single", messages=USER)
    (choice,) = response.choices
    assert choice.message.role == "assistant" and choice.message.content.startswith("answer ")
    assert choice.finish_reason == "stop" and response.model == "single" and response.object == "chat.completion"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == (4, 2, 6)
    assert len(backend.requests) == 1 and backend.requests[0].max_tokens == 64  # the architecture's own limit
    e = ext(response)
    assert (e["architecture"], e["calls"], e["budget_cut"]) == ("single", 1, False)
    assert e["nodes"] == [
        {"name": "generate0", "calls": 1, "prompt_tokens": 4, "completion_tokens": 2, "cost_usd": 0.0, "cache_hits": 0}
    ]


def test_usage_sums_every_internal_call_and_n_gives_distinct_answers(live: LiveServer, backend: WordStreamBackend):
    response = live.client().chat.completions.create(model="vote-4", messages=USER, n=3)
    assert len(backend.requests) == 4  # generate n=4, one call per sample
    assert response.usage.prompt_tokens == 4 * 4 and response.usage.completion_tokens == 4 * 2
    texts = [c.message.content for c in response.choices]
    assert len(texts) == len(set(texts)) == 3 and [c.index for c in response.choices] == [0, 1, 2]
    assert ext(response)["calls"] == 4 and [n["name"] for n in ext(response)["nodes"]] == ["generate0", "vote1"]


def test_n_larger_than_the_candidates_returns_what_there_is(live: LiveServer):
    response = live.client().chat.completions.create(model="vote-4", messages=USER, n=10)
    assert len(response.choices) == 3 and ext(response)["choices_available"] == 3


def test_request_options_override_every_internal_call(live: LiveServer, backend: WordStreamBackend):
    live.client().chat.completions.create(model="vote-4", messages=USER, max_tokens=5, temperature=0.1, seed=7, stop=["STOP"])
    assert len(backend.requests) == 4
    for request in backend.requests:
        assert (request.max_tokens, request.temperature, request.stop) == (5, 0.1, ("STOP",))
    assert sorted(r.seed for r in backend.requests) == [7, 8, 9, 10]  # sample i uses seed + i


async def test_async_client_many_concurrent_requests(live: LiveServer, backend: WordStreamBackend):
    async with live.async_client() as client:
        responses = await asyncio.gather(*(client.chat.completions.create(model="vote-4", messages=USER) for _ in range(12)))
    assert all(r.choices[0].message.content.startswith("answer") for r in responses)
    assert len(backend.requests) == 12 * 4 and len({r.id for r in responses}) == 12


def test_models_health_and_metrics(live: LiveServer):
    models = live.client().models.list()
    assert sorted(m.id for m in models.data) == sorted(SPECS) and all(m.owned_by == "thinktank" for m in models.data)
    live.client().chat.completions.create(model="vote-4", messages=USER)
    with live.http() as http:
        assert http.get("/health").json()["status"] == "ok"
        text = http.get("/metrics").text
    assert 'thinktank_requests_total{route="/v1/chat/completions",status="200"} 1.0\n' in text
    assert 'thinktank_tokens_total{architecture="vote-4",kind="completion"} 8.0\n' in text
    assert 'thinktank_backend_calls_total{architecture="vote-4",status="ok"} 4.0\n' in text


BUDGET_SPECS = {"chain": {"name": "chain", "layers": [{"generate": {"n": 1}}, {"generate": {"n": 1, "name": "again"}}]}}


@pytest.mark.parametrize("via", ["body", "header"])
@pytest.mark.parametrize("stream", [False, True])
def test_budget_cut_answers_200_with_length(via: str, stream: bool):
    backend = WordStreamBackend(lambda r, i: "first answer")
    with serving(backend, BUDGET_SPECS) as live:
        options: dict[str, Any] = {}
        if via == "body":
            options["extra_body"] = {"thinktank": {"budget": {"max_tokens": 3}}}
        else:
            options["extra_headers"] = {"X-Thinktank-Budget-Tokens": "3"}
        client = live.client()
        if stream:
            chunks = list(client.chat.completions.create(model="chain", messages=USER, stream=True, **options))
            content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            extension = chunks[-1].model_extra["thinktank"]
        else:
            response = client.chat.completions.create(model="chain", messages=USER, **options)
            content, finish, extension = response.choices[0].message.content, [response.choices[0].finish_reason], ext(response)
    assert len(backend.requests) == 1  # the second layer was refused by the budget
    assert content == "first answer" and finish == ["length"] and extension["budget_cut"] is True


# --- streaming -------------------------------------------------------------------------------


def test_stream_reassembles_the_answer_with_usage(live: LiveServer, backend: WordStreamBackend):
    chunks = list(
        live.client().chat.completions.create(model="single", messages=USER, stream=True, stream_options={"include_usage": True})
    )
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 2 and "".join(content) == "answer " + content[1]  # word by word, as the backend streamed
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 6
    assert chunks[-1].model_extra["thinktank"]["calls"] == 1 and len({c.id for c in chunks}) == 1


def test_stream_wire_format_keepalives_and_done():
    backend = ScriptedBackend(lambda r, i: f"answer {i % 2}", delay_s=0.3)  # slow enough for a few keep-alives
    with serving(backend, keepalive_s=0.05) as live, live.http() as http:
        body = {"model": "vote-4", "messages": USER, "stream": True, "n": 2}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            raw = response.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert events[-1] == "data: [DONE]" and ": keep-alive" in events
    chunks = [json.loads(e.removeprefix("data: ")) for e in events if e.startswith("data: {")]
    by_index = {
        i: "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"] and c["choices"][0]["index"] == i
        )
        for i in (0, 1)
    }
    assert sorted(by_index.values()) == ["answer 0", "answer 1"]
    assert "thinktank" in chunks[-1] and "usage" not in chunks[-1]  # usage only when asked for


async def test_async_stream(live: LiveServer):
    async with live.async_client() as client:
        stream = await client.chat.completions.create(model="single", messages=USER, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.startswith("answer ")


def test_client_disconnect_mid_stream_cancels_the_backend_calls():
    gate = Gate()
    with serving(ScriptedBackend(gate.handler)) as live, live.http() as http:
        body = {"model": "vote-4", "messages": USER, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")  # the role chunk: the stream is open
            assert gate.started.wait(5)
        # leaving the block closed the connection while the four calls were still running
        assert gate.cancelled.wait(5)
        deadline = time.monotonic() + 5
        while http.get("/health").json()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert http.get("/health").json()["in_flight"] == 0  # the slot was released


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b'{"model": "single", "messages": [', None),
        (b"[1, 2]", None),
        (b'{"model": "single", "messages": "hello"}', "messages"),
        (b'{"model": "single", "messages": [{"role": "user", "content": "q"}], "n": "two"}', "n"),
        (b'{"model": "single", "messages": [{"role": "user", "content": "q"}], "temperature": "hot"}', "temperature"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "q"}]}', "model"),
        (b'{"model": "single", "messages": [{"role": "wizard", "content": "q"}]}', "messages.0.role"),
        (b'{"model": "single", "messages": []}', "messages"),
        (b'{"messages": [{"role": "user", "content": "q"}]}', "model"),
        (b'{"model": "single", "messages": [{"role": "user", "content": "q"}], "max_tokens": 1000000000}', "max_tokens"),
        (b'{"model": "single", "messages": [{"role": "user", "content": "q"}], "max_tokens": -1}', "max_tokens"),
        (b'{"model": "single", "messages": [{"role": "user", "content": "q"}], "n": 1000}', "n"),
    ],
)
def test_bad_requests_are_400_in_openai_shape(live: LiveServer, backend: WordStreamBackend, content: bytes, param: str | None):
    with live.http() as http:
        response = http.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert backend.requests == []


def test_malformed_json_says_so(live: LiveServer):
    with live.http() as http:
        response = http.post("/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"})
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_json"


def test_sdk_sees_bad_request_errors(live: LiveServer):
    with pytest.raises(openai.BadRequestError) as info:
        live.client().chat.completions.create(model="single", messages=USER, n=17)
    assert info.value.status_code == 400 and info.value.body["param"] == "n"


def test_unknown_model_is_404_listing_the_available(live: LiveServer):
    with pytest.raises(openai.NotFoundError) as info:
        live.client().chat.completions.create(model="gpt-9", messages=USER)
    assert info.value.body["code"] == "model_not_found" and info.value.body["param"] == "model"
    assert "available: single, vote-4" in info.value.body["message"]


def test_conversation_without_a_final_user_message_is_422(live: LiveServer):
    with pytest.raises(openai.UnprocessableEntityError):
        live.client().chat.completions.create(model="single", messages=[{"role": "system", "content": "hi"}])


def test_oversized_body_is_413(backend: WordStreamBackend):
    with serving(backend, max_body_bytes=2000) as live, live.http() as http:
        big = {"model": "single", "messages": [{"role": "user", "content": "x" * 5000}]}
        response = http.post("/v1/chat/completions", json=big)
        assert response.status_code == 413 and error_of(response)["code"] == "request_too_large"

        def chunked():  # no Content-Length: the limit holds on the bytes read
            yield json.dumps(big).encode()

        response = http.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert http.post("/v1/chat/completions", json={"model": "single", "messages": USER}).status_code == 200
    assert len(backend.requests) == 1


def test_unknown_route_and_method_are_openai_errors(live: LiveServer):
    with live.http() as http:
        assert error_of(http.get("/v1/nothing"))["code"] == "not_found"
        assert http.get("/v1/chat/completions").status_code == 405


def test_backend_down_is_503_with_the_reason_and_the_server_stays_up():
    down = OpenAICompatBackend(f"http://127.0.0.1:{unused_port()}/v1", max_retries=0)
    engine = Engine({MODEL: WordStreamBackend(lambda r, i: "fine"), "down": down})
    from thinktank.arch import build_architecture
    from thinktank.serve import ServeSettings, create_app

    archs = [
        build_architecture(SPECS["single"], [MODEL]),
        build_architecture({"name": "broken", "layers": [{"generate": {}}]}, ["down"]),
    ]
    live = LiveServer(create_app(engine, archs, ServeSettings(use_cache=False))).start()
    try:
        client = live.client()
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="broken", messages=USER)
        assert info.value.status_code == 503 and info.value.body["code"] == "backend_unavailable"
        assert "cannot reach backend" in info.value.body["message"]
        with pytest.raises(openai.APIError, match="backend unavailable"):  # mid-stream: an error event
            list(client.chat.completions.create(model="broken", messages=USER, stream=True))
        assert client.chat.completions.create(model="single", messages=USER).choices[0].message.content == "fine"
        with live.http() as http:
            assert 'thinktank_backend_errors_total{architecture="broken",model="down"} 2.0\n' in http.get("/metrics").text
    finally:
        live.stop()


def test_unexpected_failure_is_500_without_details_and_the_server_stays_up():
    def broken(request, i):
        raise RuntimeError("secret internal detail")

    with serving(WordStreamBackend(broken)) as live, live.http() as http:
        response = http.post("/v1/chat/completions", json={"model": "single", "messages": USER})
        assert response.status_code == 500
        error = error_of(response)
        assert (error["type"], error["code"]) == ("server_error", "internal_error") and "secret" not in error["message"]
        assert http.get("/health").status_code == 200


def test_request_timeout_is_504_and_cancels_the_calls():
    gate = Gate()
    with serving(ScriptedBackend(gate.handler), timeout_s=0.3) as live:
        with pytest.raises(openai.APIStatusError) as info:
            live.client().chat.completions.create(model="vote-4", messages=USER)
        assert info.value.status_code == 504 and info.value.body["code"] == "timeout"
        assert gate.cancelled.wait(5)


# --- auth and limits -------------------------------------------------------------------------


def test_api_key_missing_wrong_and_right(backend: WordStreamBackend):
    with serving(backend, api_key="s3cret-key") as live:
        with live.http() as http:
            missing = http.post("/v1/chat/completions", json={"model": "single", "messages": USER})
            assert missing.status_code == 401 and error_of(missing)["code"] == "missing_api_key"
            assert http.post("/v1/chat/completions", content=b"{bad json").status_code == 401  # auth before parsing
            assert http.get("/health").status_code == 200  # open for probes
            assert http.get("/metrics").status_code == 401
            assert http.get("/metrics", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        with pytest.raises(openai.AuthenticationError) as info:
            live.client(api_key="s3cret-kez").chat.completions.create(model="single", messages=USER)
        assert info.value.body["code"] == "invalid_api_key"
        assert backend.requests == []
        response = live.client(api_key="s3cret-key").chat.completions.create(model="single", messages=USER)
        assert response.choices[0].message.content.startswith("answer")


@pytest.mark.parametrize("stream", [False, True])
def test_full_queue_is_429_with_retry_after_and_the_admitted_request_finishes(stream: bool):
    gate = Gate(text="admitted")
    with serving(ScriptedBackend(gate.handler), max_concurrency_per_key=1, queue_per_key=0) as live:
        outcome: dict[str, Any] = {}

        def first() -> None:
            outcome["text"] = live.client().chat.completions.create(model="single", messages=USER).choices[0].message.content

        thread = threading.Thread(target=first)
        thread.start()
        assert gate.started.wait(5)
        with live.http() as http:
            body = {"model": "single", "messages": USER, "stream": stream}
            refused = http.post("/v1/chat/completions", json=body)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert error_of(refused)["code"] == "queue_full"
        gate.open()
        thread.join(10)
        assert outcome["text"] == "admitted"


def test_graceful_shutdown_finishes_the_in_flight_request():
    gate = Gate(text="finished after shutdown began")
    with serving(ScriptedBackend(gate.handler)) as live:
        outcome: dict[str, Any] = {}

        def in_flight() -> None:
            outcome["text"] = live.client().chat.completions.create(model="single", messages=USER).choices[0].message.content

        thread = threading.Thread(target=in_flight)
        thread.start()
        assert gate.started.wait(5)
        live.server.should_exit = True  # what SIGTERM does
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # shutdown has begun once the listening socket is closed
            try:
                socket.create_connection(("127.0.0.1", live.port), timeout=0.5).close()
            except ConnectionRefusedError:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the server kept accepting connections")
        assert live.thread.is_alive() and "text" not in outcome
        gate.open()
        thread.join(10)
        live.thread.join(10)
        assert outcome["text"] == "finished after shutdown began" and not live.thread.is_alive()
