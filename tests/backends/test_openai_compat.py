"""OpenAICompatBackend against a real loopback HTTP server: parsing, retries, errors, pooling."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
from fake_openai_server import OPENAI_CONTEXT_ERROR, FakeOpenAIServer, Reply, unused_port

from thinktank.backends import OpenAICompatBackend
from thinktank.engine import Engine
from thinktank.exceptions import (
    BackendDied,
    BackendError,
    BackendStatusError,
    BackendTimeout,
    BackendUnreachable,
    ContextLengthExceeded,
    is_retryable,
)
from thinktank.types import GenerationRequest

BACKOFF_BASE_S = 0.002


def make_backend(server: FakeOpenAIServer, **overrides: Any) -> OpenAICompatBackend:
    """A backend with tiny backoff so retry tests stay fast."""
    options: dict[str, Any] = {"backoff_base_s": BACKOFF_BASE_S, "timeout_s": 5.0} | overrides
    return OpenAICompatBackend(server.base_url, **options)


def spy_on_backoff(backend: OpenAICompatBackend, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record every delay the retry policy slept (and really sleep it)."""
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(seconds)

    monkeypatch.setattr(backend, "retry_policy", dataclasses.replace(backend.retry_policy, sleep=sleep))
    return delays


def prompt(text: str = "two plus two", **kwargs: Any) -> GenerationRequest:
    return GenerationRequest.from_prompt(text, "m", **kwargs)


# -- parsing and payload -----------------------------------------------------------


async def test_parses_text_and_usage_with_cached_tokens(fake_server: FakeOpenAIServer) -> None:
    fake_server.cached_tokens = 2
    async with make_backend(fake_server) as backend:
        response = await backend.generate(prompt("one two three"))
    assert [c.text for c in response.choices] == ["answer 0"]
    assert response.choices[0].finish_reason == "stop"
    assert (response.prompt_tokens, response.cached_prompt_tokens, response.completion_tokens) == (3, 2, 2)
    assert response.model == "m" and response.latency_s > 0


async def test_missing_usage_counts_as_zero(fake_server: FakeOpenAIServer) -> None:
    fake_server.include_usage = False
    async with make_backend(fake_server) as backend:
        response = await backend.generate(prompt())
    assert (response.prompt_tokens, response.cached_prompt_tokens, response.completion_tokens) == (0, 0, 0)


async def test_payload_carries_sampling_params_and_extra_body(fake_server: FakeOpenAIServer) -> None:
    request = prompt(
        temperature=0.7, top_p=0.9, max_tokens=33, stop=("\n\n",), seed=5, extra_body={"top_k": 4, "cache_prompt": True}
    )
    async with make_backend(fake_server) as backend:
        await backend.generate(request)
    (sent,) = fake_server.chat_requests
    assert sent.method == "POST" and sent.path == "/v1/chat/completions"
    assert sent.body == {
        "model": "m",
        "messages": [{"role": "user", "content": "two plus two"}],
        "n": 1,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 33,
        "stop": ["\n\n"],
        "seed": 5,
        "top_k": 4,
        "cache_prompt": True,
    }


@pytest.mark.parametrize(("api_key", "expected"), [("sk-test-123", "Bearer sk-test-123"), (None, None)])
async def test_api_key_is_sent_as_bearer(fake_server: FakeOpenAIServer, api_key: str | None, expected: str | None) -> None:
    async with make_backend(fake_server, api_key=api_key) as backend:
        await backend.generate(prompt())
    assert fake_server.requests[0].headers.get("authorization") == expected


async def test_list_models(fake_server: FakeOpenAIServer) -> None:
    async with make_backend(fake_server) as backend:
        assert await backend.list_models() == ["fake-model"]


@pytest.mark.parametrize(
    "body",
    [b'{"data": [{"name": "no id"}]}', b'{"data": "oops"}', b'{"data": [{"id": 7}]}', b"[]", b'{"data": [ not json'],
    ids=["no-id", "data-not-a-list", "id-not-a-string", "not-an-object", "invalid-json"],
)
async def test_a_malformed_model_list_is_a_backend_error(fake_server: FakeOpenAIServer, body: bytes) -> None:
    fake_server.script(Reply(raw_body=body))
    async with make_backend(fake_server) as backend:
        with pytest.raises(BackendError, match=f"{fake_server.base_url}/models"):
            await backend.list_models()
    assert len(fake_server.requests) == 1  # a malformed answer is not retried


# -- n: native vs fan-out ----------------------------------------------------------


async def test_native_n_is_one_request_and_splits_completion_tokens() -> None:
    with FakeOpenAIServer(text_for=lambda body, i: "word " * (i + 1)) as server:
        async with make_backend(server) as backend:
            response = await backend.generate(prompt(n=4, temperature=0.8))
    assert [r.body["n"] for r in server.chat_requests] == [4]
    assert [c.completion_tokens for c in response.choices] == [1, 2, 3, 4]  # exact when tokens track length


async def test_engine_uses_one_request_for_native_n(fake_server: FakeOpenAIServer) -> None:
    async with make_backend(fake_server) as backend:
        ctx = Engine({"m": backend}).context()
        completions = await ctx.generate(prompt("a b", n=4, temperature=0.8))
    assert [c.text for c in completions] == [f"answer {i}" for i in range(4)]
    assert len(fake_server.chat_requests) == 1
    assert (ctx.usage.calls, ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (1, 2, 8)


async def test_engine_fans_out_when_server_lacks_n() -> None:
    with FakeOpenAIServer(native_n=False) as server:
        server.cached_tokens = 1
        async with make_backend(server, supports_native_n=False) as backend:
            ctx = Engine({"m": backend}).context()
            completions = await ctx.generate(prompt("a b", n=5, temperature=0.8))
    assert len(completions) == 5 and len(server.chat_requests) == 5
    assert all(r.body["n"] == 1 for r in server.chat_requests)
    assert (ctx.usage.calls, ctx.usage.prompt_tokens, ctx.usage.cached_prompt_tokens) == (5, 10, 5)
    assert [call.status for call in ctx.node.calls] == ["ok"] * 5


async def test_backend_alone_fans_out_with_successive_seeds() -> None:
    with FakeOpenAIServer(native_n=False) as server:
        async with make_backend(server, supports_native_n=False) as backend:
            response = await backend.generate(prompt("a b c", n=3, seed=7))
    assert len(response.choices) == 3
    assert sorted(r.body["seed"] for r in server.chat_requests) == [7, 8, 9]
    assert response.prompt_tokens == 9  # three calls, each paid for its prompt


async def test_server_ignoring_n_is_a_clear_error() -> None:
    with FakeOpenAIServer(native_n=False) as server:
        async with make_backend(server, supports_native_n=True) as backend:
            with pytest.raises(BackendError, match=r"1 choice\(s\) for n=3.*supports_native_n=False"):
                await backend.generate(prompt(n=3))


# -- retries -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_status_is_retried_with_jittered_backoff(
    fake_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    fake_server.script(Reply(status=status), Reply(status=status), Reply())
    async with make_backend(fake_server) as backend:
        delays = spy_on_backoff(backend, monkeypatch)
        response = await backend.generate(prompt())
    assert response.choices[0].text == "answer 0"
    assert len(fake_server.chat_requests) == 3
    assert len(delays) == 2
    assert all(0 <= d <= BACKOFF_BASE_S * 2**attempt for attempt, d in enumerate(delays))


def test_backoff_is_full_jitter_growing_to_a_cap() -> None:
    backend = OpenAICompatBackend("http://127.0.0.1:1/v1", backoff_base_s=1.0, backoff_max_s=20.0)
    error = BackendUnreachable("down")
    draws = [backend.retry_policy.delay(3, error) for _ in range(300)]
    assert all(0 <= d <= 8.0 for d in draws)
    assert max(draws) - min(draws) > 4.0  # spread out, not a fixed delay
    assert max(backend.retry_policy.delay(10, error) for _ in range(300)) <= 20.0


async def test_retry_after_is_honoured(fake_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_server.script(Reply(status=429, retry_after=0.25), Reply())
    async with make_backend(fake_server) as backend:
        delays = spy_on_backoff(backend, monkeypatch)
        await backend.generate(prompt())
    assert delays == [0.25]
    first, second = fake_server.chat_requests
    assert second.received_at - first.received_at >= 0.24  # the server saw the wait, not just the spy


async def test_retry_after_is_capped_by_backoff_max(fake_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_server.script(Reply(status=503, retry_after=120), Reply())
    async with make_backend(fake_server, backoff_max_s=0.05) as backend:
        delays = spy_on_backoff(backend, monkeypatch)
        await backend.generate(prompt())
    assert delays == [0.05]


async def test_gives_up_after_max_retries(fake_server: FakeOpenAIServer) -> None:
    fake_server.default = Reply(status=503, error="all slots are busy")
    async with make_backend(fake_server, max_retries=2) as backend:
        with pytest.raises(BackendStatusError, match="HTTP 503: all slots are busy") as info:
            await backend.generate(prompt())
    assert info.value.status_code == 503 and len(fake_server.chat_requests) == 3


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_not_retried(fake_server: FakeOpenAIServer, status: int) -> None:
    fake_server.script(Reply(status=status, error="model 'zz' does not exist"), Reply())
    async with make_backend(fake_server) as backend:
        with pytest.raises(BackendStatusError) as info:
            await backend.generate(prompt())
    assert type(info.value) is BackendStatusError and info.value.status_code == status
    assert f"HTTP {status}: model 'zz' does not exist" in str(info.value) and fake_server.base_url in str(info.value)
    assert len(fake_server.chat_requests) == 1


@pytest.mark.parametrize(
    "reply", [Reply.context_length(), Reply.context_length(OPENAI_CONTEXT_ERROR)], ids=["llama.cpp", "openai"]
)
async def test_context_length_error(fake_server: FakeOpenAIServer, reply: Reply) -> None:
    fake_server.script(reply, Reply())
    async with make_backend(fake_server) as backend:
        with pytest.raises(ContextLengthExceeded) as info:
            await backend.generate(prompt())
    assert info.value.status_code == 400 and not is_retryable(info.value)
    assert len(fake_server.chat_requests) == 1


async def test_non_json_error_body_is_quoted(fake_server: FakeOpenAIServer) -> None:
    fake_server.default = Reply(status=502, raw_body=b"<html>Bad Gateway from proxy</html>")
    async with make_backend(fake_server, max_retries=1) as backend:
        with pytest.raises(BackendStatusError, match="HTTP 502: <html>Bad Gateway from proxy"):
            await backend.generate(prompt())


async def test_invalid_json_is_a_backend_error_without_retry(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(Reply.invalid_json(), Reply())
    async with make_backend(fake_server) as backend:
        with pytest.raises(BackendError, match="invalid JSON"):
            await backend.generate(prompt())
    assert len(fake_server.chat_requests) == 1


# -- connection trouble --------------------------------------------------------------


@pytest.mark.parametrize("trouble", [Reply(drop=True), Reply(reset=True)], ids=["drop", "reset"])
async def test_dropped_connection_is_retried(
    fake_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, trouble: Reply
) -> None:
    fake_server.script(trouble, Reply())
    async with make_backend(fake_server) as backend:
        delays = spy_on_backoff(backend, monkeypatch)
        response = await backend.generate(prompt())
    assert response.choices[0].text == "answer 0"
    assert len(fake_server.chat_requests) == 2 and len(delays) == 1


@pytest.mark.parametrize("trouble", [Reply(drop=True), Reply(reset=True)], ids=["drop", "reset"])
async def test_dropped_connection_without_retries_is_unreachable(fake_server: FakeOpenAIServer, trouble: Reply) -> None:
    fake_server.default = trouble
    async with make_backend(fake_server, max_retries=0) as backend:
        with pytest.raises(BackendUnreachable):
            await backend.generate(prompt())


async def test_server_not_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{unused_port()}/v1"
    async with OpenAICompatBackend(url, max_retries=2, backoff_base_s=BACKOFF_BASE_S) as backend:
        delays = spy_on_backoff(backend, monkeypatch)
        with pytest.raises(BackendUnreachable) as info:
            await backend.generate(prompt())
    message = str(info.value)
    assert f"{url}/chat/completions" in message and "thinktank backend start" in message
    assert "()" not in message  # the reason is named, not blank
    assert info.value.url == f"{url}/chat/completions"
    assert len(delays) == 2  # connection errors are retried too


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_an_owned_server_that_died_is_named_and_not_retried(monkeypatch: pytest.MonkeyPatch, stream: bool) -> None:
    url = f"http://127.0.0.1:{unused_port()}/v1"
    why = "the embedded llama-server for m (pid 42) was killed by SIGKILL during the run; its log: /x/server.log"
    options = {"max_retries": 3, "backoff_base_s": BACKOFF_BASE_S, "explain_unreachable": lambda: why}
    async with OpenAICompatBackend(url, **options) as backend:
        delays = spy_on_backoff(backend, monkeypatch)
        with pytest.raises(BackendDied) as info:
            if stream:
                async for _ in backend.stream(prompt()):
                    pass
            else:
                await backend.generate(prompt(n=2))
    assert str(info.value) == why and not is_retryable(info.value)
    assert delays == []  # a dead process does not come back by waiting


async def test_an_owned_server_that_still_runs_is_plain_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{unused_port()}/v1"
    async with OpenAICompatBackend(
        url, max_retries=1, backoff_base_s=BACKOFF_BASE_S, explain_unreachable=lambda: None
    ) as backend:
        delays = spy_on_backoff(backend, monkeypatch)
        with pytest.raises(BackendUnreachable):
            await backend.generate(prompt())
    assert len(delays) == 1


async def test_unusable_url_is_a_backend_error_without_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    async with OpenAICompatBackend("ftp://127.0.0.1:1/v1") as backend:
        delays = spy_on_backoff(backend, monkeypatch)
        with pytest.raises(BackendError, match="unsupported protocol"):
            await backend.generate(prompt())
    assert delays == []


async def test_slow_server_times_out(fake_server: FakeOpenAIServer) -> None:
    fake_server.default = Reply(delay_s=3.0)
    started = time.monotonic()
    async with make_backend(fake_server, timeout_s=0.2, max_retries=1) as backend:
        with pytest.raises(BackendTimeout, match="timed out"):
            await backend.generate(prompt())
    assert time.monotonic() - started < 1.5
    assert len(fake_server.chat_requests) == 2


async def test_timeout_then_success(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(Reply(delay_s=3.0), Reply())
    async with make_backend(fake_server, timeout_s=0.2) as backend:
        response = await backend.generate(prompt())
    assert response.choices[0].text == "answer 0"


async def test_closed_backend_raises_backend_error(fake_server: FakeOpenAIServer) -> None:
    backend = make_backend(fake_server)
    await backend.aclose()
    with pytest.raises(BackendError, match="closed"):
        await backend.generate(prompt())


# -- connection pooling ----------------------------------------------------------------


async def test_sequential_calls_reuse_one_connection(fake_server: FakeOpenAIServer) -> None:
    async with make_backend(fake_server) as backend:
        for i in range(10):
            await backend.generate(prompt(f"question {i}"))
    assert len(fake_server.chat_requests) == 10 and fake_server.connections == 1


async def test_many_concurrent_calls_share_a_bounded_pool(fake_server: FakeOpenAIServer) -> None:
    fake_server.default = Reply(delay_s=0.02)
    async with make_backend(fake_server, max_concurrency=4) as backend:  # pool: at most 16 connections
        for _wave in range(2):
            await asyncio.gather(*(backend.generate(prompt(f"q {i}")) for i in range(100)))
    assert len(fake_server.chat_requests) == 200
    assert fake_server.peak_open_connections <= 16
    assert len(fake_server.client_ports) <= 16  # the second wave reused the first wave's connections


async def test_engine_limit_bounds_connections(fake_server: FakeOpenAIServer) -> None:
    fake_server.default = Reply(delay_s=0.01)
    async with make_backend(fake_server, max_concurrency=3) as backend:
        engine = Engine({"m": backend})
        await asyncio.gather(*(engine.context().generate(prompt(f"q {i}")) for i in range(40)))
    assert len(fake_server.chat_requests) == 40
    assert 1 <= fake_server.connections <= 3


def llama_stream(events: list[dict[str, Any]], done: bool = True) -> str:
    """An SSE body the way llama-server streams it."""
    import json

    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + ("data: [DONE]\n\n" if done else "")


def delta(index: int, text: str | None = None, finish: str | None = None) -> dict[str, Any]:
    return {"model": "m", "choices": [{"index": index, "delta": {"content": text} if text else {}, "finish_reason": finish}]}


def usage_chunk(completion: int, prompt: int = 7) -> dict[str, Any]:
    return {"model": "m", "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


# n = 3, interleaved as llama-server's slots finish: each choice's usage chunk follows its last chunk;
# choice 1 gets no usage chunk and is counted a token per content chunk
INTERLEAVED = [
    delta(0, "a"), delta(2, "x"), delta(1, "p"), delta(2, "y"), delta(0, "b"),
    delta(0, None, "stop"), usage_chunk(2),
    delta(1, "q"), delta(2, "z"), delta(2, None, "length"), usage_chunk(4),
    delta(1, "r"), delta(1, None, "stop"),
]  # fmt: skip


async def test_choice_usage_read_from_a_streamed_call_when_usage_covers_one_choice() -> None:
    """llama-server with n > 1 reports the first choice's usage only; streamed, it reports each choice's."""
    import json

    import httpx

    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        if body.get("stream"):
            return httpx.Response(200, text=llama_stream(INTERLEAVED), headers={"content-type": "text/event-stream"})
        choice = {"index": 0, "finish_reason": "stop", "message": {"content": "one"}}
        return httpx.Response(200, json={"choices": [choice], "usage": {"prompt_tokens": 7, "completion_tokens": 2}})

    backend = OpenAICompatBackend("http://llama", count_choice_tokens=True, transport=httpx.MockTransport(handler))
    async with backend:
        response = await backend.generate(prompt(n=3, temperature=0.8, seed=5))
        single = await backend.generate(prompt(n=1))
    assert [c.text for c in response.choices] == ["ab", "pqr", "xyz"]
    assert [c.finish_reason for c in response.choices] == ["stop", "stop", "length"]
    assert [c.completion_tokens for c in response.choices] == [2, 3, 4] and response.prompt_tokens == 7
    assert seen[0]["stream"] is True and seen[0]["stream_options"] == {"include_usage": True} and seen[0]["seed"] == 5
    assert "logprobs" not in seen[0]
    assert "stream" not in seen[1] and single.choices[0].completion_tokens == 2  # n = 1: one call, usage is exact


async def test_a_streamed_call_cut_before_every_choice_finished_is_retried_then_unreachable() -> None:
    import httpx

    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        cut = llama_stream(INTERLEAVED[:7], done=False)  # choices 1 and 2 never finish
        return httpx.Response(200, text=cut, headers={"content-type": "text/event-stream"})

    backend = OpenAICompatBackend(
        "http://llama", count_choice_tokens=True, max_retries=1, backoff_base_s=0.0, transport=httpx.MockTransport(handler)
    )
    async with backend:
        with pytest.raises(BackendUnreachable, match=r"before choice\(s\) \[1, 2\] finished"):
            await backend.generate(prompt(n=3, temperature=0.8, seed=5))
    assert calls == 2  # the whole call is made again once, like a dropped connection


# -- streaming against the fake server's SSE -------------------------------------------


async def test_stream_reads_word_deltas_and_the_usage_chunk(fake_server: FakeOpenAIServer) -> None:
    fake_server.cached_tokens = 1
    async with make_backend(fake_server) as backend:
        events = [event async for event in backend.stream(prompt("one two three"))]
    (sent,) = fake_server.chat_requests
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    assert [e.delta for e in events[:-1]] == ["answer", " 0"]
    final = events[-1].response
    assert final is not None and not events[-1].usage_estimated
    assert (final.choices[0].text, final.choices[0].finish_reason) == ("answer 0", "stop")
    assert (final.prompt_tokens, final.cached_prompt_tokens, final.completion_tokens) == (3, 1, 2)


async def test_stream_without_usage_counts_a_token_per_chunk(fake_server: FakeOpenAIServer) -> None:
    fake_server.include_usage = False
    async with make_backend(fake_server) as backend:
        events = [event async for event in backend.stream(prompt())]
    assert events[-1].usage_estimated and events[-1].response is not None
    assert events[-1].response.completion_tokens == 2


async def test_a_stream_cut_before_its_last_chunk_is_unreachable(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(Reply(cut_stream=True))
    async with make_backend(fake_server) as backend:
        with pytest.raises(BackendUnreachable, match="ended the stream before its last chunk"):
            async for _ in backend.stream(prompt()):
                pass
    assert len(fake_server.chat_requests) == 1  # the server answered: a cut stream is not replayed


async def test_choice_usage_from_the_fake_servers_stream(fake_server: FakeOpenAIServer) -> None:
    fake_server.text_for = lambda body, i: "word " * (i + 1)
    async with make_backend(fake_server, count_choice_tokens=True) as backend:
        response = await backend.generate(prompt(n=3, temperature=0.8))
    assert [c.completion_tokens for c in response.choices] == [1, 2, 3]
    assert [c.text for c in response.choices] == ["word ", "word word ", "word word word "]
