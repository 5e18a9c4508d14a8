"""OpenAICompatBackend.stream over scripted SSE bodies (httpx.MockTransport): deltas, usage, errors, retries."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from thinktank.backends import OpenAICompatBackend, StreamEvent
from thinktank.exceptions import BackendError, BackendStatusError, BackendUnreachable, ContextLengthExceeded
from thinktank.types import GenerationRequest

REQ = GenerationRequest.from_prompt("hi", "m", max_tokens=8)


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def sse(*events: dict[str, Any] | str) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


LLAMA_STYLE = sse(
    chunk(""),
    chunk("Hel"),
    chunk("lo"),
    chunk(None, "length"),
    {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}}},
    "[DONE]",
)


def backend_for(*bodies: bytes | httpx.Response, seen: list[httpx.Request] | None = None) -> OpenAICompatBackend:
    replies = list(bodies)

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, httpx.Response):
            return reply
        return httpx.Response(200, content=reply, headers={"content-type": "text/event-stream"})

    return OpenAICompatBackend("http://upstream/v1", transport=httpx.MockTransport(handle), backoff_base_s=0.001)


async def events_of(backend: OpenAICompatBackend) -> list[StreamEvent]:
    async with backend:
        return [e async for e in backend.stream(REQ)]


async def test_deltas_then_a_response_with_the_servers_usage():
    seen: list[httpx.Request] = []
    events = await events_of(backend_for(LLAMA_STYLE, seen=seen))
    assert [e.delta for e in events[:-1]] == ["Hel", "lo"]
    final = events[-1].response
    assert final is not None and not events[-1].usage_estimated
    assert (final.choices[0].text, final.choices[0].finish_reason, final.choices[0].completion_tokens) == ("Hello", "length", 2)
    assert (final.prompt_tokens, final.cached_prompt_tokens) == (9, 4)
    payload = json.loads(seen[0].content)
    assert payload["stream"] is True and payload["stream_options"] == {"include_usage": True}


async def test_no_usage_chunk_counts_content_chunks_and_marks_it():
    events = await events_of(backend_for(sse(chunk("a"), chunk("b"), chunk("c", "stop"), "[DONE]")))
    final = events[-1]
    assert final.usage_estimated and final.response is not None
    assert final.response.choices[0].completion_tokens == 3 and final.response.prompt_tokens == 0


async def test_comments_and_multiline_framing_are_tolerated():
    body = b": ping\n\n" + sse(chunk("x")) + b"data: " + json.dumps(chunk("y", "stop")).encode() + b"\n\n"
    events = await events_of(backend_for(body))  # no [DONE], but a finish_reason: complete
    assert [e.delta for e in events if e.delta] == ["x", "y"]


async def test_stream_cut_before_the_last_chunk_is_unreachable():
    with pytest.raises(BackendUnreachable, match="before its last chunk"):
        await events_of(backend_for(sse(chunk("partial"))))


async def test_error_event_mid_stream_raises_backend_error():
    body = sse(chunk("a"), {"error": {"message": "slot crashed", "type": "server_error"}})
    with pytest.raises(BackendError, match="slot crashed"):
        await events_of(backend_for(body))


async def test_invalid_json_chunk_raises_backend_error():
    with pytest.raises(BackendError, match="invalid JSON"):
        await events_of(backend_for(b"data: {nope\n\n"))


async def test_retryable_status_before_the_stream_is_retried():
    seen: list[httpx.Request] = []
    busy = httpx.Response(503, json={"error": {"message": "busy"}}, headers={"retry-after": "0"})
    events = await events_of(backend_for(busy, LLAMA_STYLE, seen=seen))
    assert len(seen) == 2 and events[-1].response is not None


async def test_context_length_status_maps_and_is_not_retried():
    seen: list[httpx.Request] = []
    too_long = httpx.Response(400, json={"error": {"message": "x", "type": "exceed_context_size_error"}})
    with pytest.raises(ContextLengthExceeded):
        await events_of(backend_for(too_long, seen=seen))
    assert len(seen) == 1


async def test_connection_refused_maps_to_unreachable():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    backend = OpenAICompatBackend(
        "http://upstream/v1", transport=httpx.MockTransport(refuse), max_retries=1, backoff_base_s=0.001
    )
    with pytest.raises(BackendUnreachable):
        await events_of(backend)


async def test_final_status_error_carries_the_status():
    with pytest.raises(BackendStatusError) as info:
        await events_of(backend_for(httpx.Response(401, json={"error": {"message": "bad key"}})))
    assert info.value.status_code == 401
