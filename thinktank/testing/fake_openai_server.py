"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1, for tests and benchmarks.

Plain asyncio on its own event loop in a background thread: it serves async tests and
sync callers alike (CLI runners, benchmarks), and gives raw control of the socket, so a
reply can drop or reset the connection, send broken JSON, or stall. It records every
request and every client connection it accepted.

A request with `"stream": true` is answered with server-sent events the way llama-server
sends them: a chunk per word, a chunk with the finish reason, and (with `include_usage`)
a usage chunk after each choice's last chunk, then `[DONE]`. `Reply(cut_stream=True)`
ends the stream before any choice finishes, as a server that dies mid-answer would.
`message_for` (instead of `text_for`) answers with whole messages: `tool_calls` (finish reason "tool_calls";
streamed as llama-server does, the name first, the arguments in pieces) and `reasoning_content`.

    with FakeOpenAIServer() as server:
        server.script(Reply(status=503, retry_after=0.01), Reply())
        backend = OpenAICompatBackend(server.base_url)
        ...  # the first call is retried once
        assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 2
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

LLAMA_CPP_CONTEXT_ERROR = "the request exceeds the available context size, try increasing it"
OPENAI_CONTEXT_ERROR = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens."


@dataclass(frozen=True)
class Reply:
    """How the server answers one request. Scripted replies are used in arrival order."""

    status: int = 200
    delay_s: float = 0.0  # wait before answering (or before dropping)
    retry_after: float | None = None  # sent as the Retry-After header, in seconds
    error: str | None = None  # message of the OpenAI-shaped error body of a non-200 reply
    error_type: str = "server_error"
    raw_body: bytes | None = None  # sent verbatim instead of the JSON body
    drop: bool = False  # close the connection without answering
    reset: bool = False  # abort the connection with a TCP RST
    choices: int | None = None  # how many choices a 200 carries; default: n (or 1 without native n)
    cut_stream: bool = False  # a streamed answer stops after the content chunks: no finish, no usage, no [DONE]

    @classmethod
    def context_length(cls, message: str = LLAMA_CPP_CONTEXT_ERROR) -> Reply:
        return cls(status=400, error=message, error_type="exceed_context_size_error")

    @classmethod
    def invalid_json(cls) -> Reply:
        return cls(raw_body=b'{"choices": [ this is not json')


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None
    client_port: int
    received_at: float  # time.monotonic()


def default_text(body: dict[str, Any], index: int) -> str:
    return f"answer {index}"


class FakeOpenAIServer:
    """Start with `with FakeOpenAIServer() as server:` or `start()` / `stop()`; see the module docstring."""

    def __init__(
        self,
        *,
        native_n: bool = True,
        text_for: Callable[[dict[str, Any], int], str] = default_text,
        message_for: Callable[[dict[str, Any], int], dict[str, Any]] | None = None,
    ) -> None:
        self.native_n = native_n
        self.text_for = text_for
        self.message_for = message_for
        self.default = Reply()
        self.cached_tokens = 0  # reported as usage.prompt_tokens_details.cached_tokens
        self.include_usage = True
        self.requests: list[RecordedRequest] = []
        self.connections = 0  # accepted TCP connections
        self.client_ports: set[int] = set()
        self.open_connections = 0
        self.peak_open_connections = 0
        self.port = 0
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests; once used up, `self.default` answers."""
        with self._lock:
            self._script.extend(replies)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-openai-server", daemon=True)
        self._thread.start()
        start = asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=2048)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- HTTP ------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        port = writer.get_extra_info("peername")[1]
        self.connections += 1
        self.client_ports.add(port)
        self.open_connections += 1
        self.peak_open_connections = max(self.peak_open_connections, self.open_connections)
        try:
            while await self._handle_one(reader, writer, port):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # stop() ends open connections; nobody awaits this task to see the cancellation
        finally:
            self.open_connections -= 1
            self._handlers.discard(task)
            writer.close()

    async def _handle_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> bool:
        """Answer one request on a kept-alive connection; False ends the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        body = json.loads(raw) if raw else None
        self.requests.append(RecordedRequest(method, path, headers, body, port, time.monotonic()))

        reply = self._next_reply()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if reply.drop:
            return False
        chat = (method, reply.status, reply.raw_body) == ("POST", 200, None) and path.endswith("/chat/completions")
        streaming = chat and isinstance(body, dict) and bool(body.get("stream"))
        if streaming and isinstance(body, dict):  # (isinstance again, for the type checker)
            status, events = 200, self._events(body, reply)
        else:
            status, content = self._answer(method, path, body, reply)
            events = [content]
        kind = "text/event-stream" if streaming else "application/json"
        extra = f"Retry-After: {reply.retry_after:g}\r\n" if reply.retry_after is not None else ""
        status_line = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {kind}\r\n"
        writer.write(f"{status_line}Content-Length: {sum(map(len, events))}\r\n{extra}\r\n".encode())
        for event in events:  # one write per event, so a streaming client reads them as they come
            writer.write(event)
            await writer.drain()
        return headers.get("connection", "").lower() != "close"

    def _answer(self, method: str, path: str, body: Any, reply: Reply) -> tuple[int, bytes]:
        if reply.raw_body is not None:
            return reply.status, reply.raw_body
        if reply.status != 200:
            message = reply.error or HTTPStatus(reply.status).phrase
            error = {"error": {"code": reply.status, "message": message, "type": reply.error_type}}
            return reply.status, json.dumps(error).encode()
        if method == "GET" and path.endswith("/models"):
            return 200, json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).encode()
        if method != "POST" or not path.endswith("/chat/completions"):
            return 404, json.dumps({"error": {"code": 404, "message": f"no route {method} {path}"}}).encode()
        return 200, json.dumps(self._completion(body, reply)).encode()

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        n = int(body.get("n") or 1)
        count = reply.choices if reply.choices is not None else (n if self.native_n else 1)
        if self.message_for is not None:
            messages = [{"role": "assistant", **self.message_for(body, i)} for i in range(count)]
        else:
            messages = [{"role": "assistant", "content": self.text_for(body, i)} for i in range(count)]
        texts = [_generated(m) for m in messages]
        data: dict[str, Any] = {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "choices": [
                {"index": i, "message": m, "finish_reason": "tool_calls" if m.get("tool_calls") else "stop"}
                for i, m in enumerate(messages)
            ],
        }
        if self.include_usage:
            prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            completion = sum(len(t.split()) for t in texts)
            data["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            }
        return data

    def _events(self, body: dict[str, Any], reply: Reply) -> list[bytes]:
        """The SSE events of a streamed answer to `body` (see the module docstring)."""
        completion = self._completion(body, reply)
        model, usage = completion["model"], completion.get("usage")
        events: list[dict[str, Any]] = []
        for choice in completion["choices"]:
            index, message = choice["index"], choice["message"]
            text = message.get("content") or ""

            def delta(d: dict[str, Any], index: int = index) -> None:
                events.append({"model": model, "choices": [{"index": index, "delta": d, "finish_reason": None}]})

            if message.get("reasoning_content"):
                delta({"reasoning_content": message["reasoning_content"]})
            for word in filter(None, re.split(r"(?<=\S)(?=\s)", text)):  # "a b " -> "a", " b", " "
                delta({"content": word})
            for i, call in enumerate(message.get("tool_calls") or []):
                head = {"index": i, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"]}}
                delta({"tool_calls": [head]})
                arguments = call["function"]["arguments"]
                for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                    delta({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
            if reply.cut_stream:
                continue
            events.append({"model": model, "choices": [{"index": index, "delta": {}, "finish_reason": choice["finish_reason"]}]})
            if usage is not None:
                own = {**usage, "completion_tokens": len(_generated(message).split())}
                own["total_tokens"] = own["prompt_tokens"] + own["completion_tokens"]
                events.append({"model": model, "choices": [], "usage": own})
        encoded = [f"data: {json.dumps(event)}\n\n".encode() for event in events]
        return encoded if reply.cut_stream else [*encoded, b"data: [DONE]\n\n"]


def _generated(message: dict[str, Any]) -> str:
    """All a message's generated text (a token per word): its content, reasoning and tool calls."""
    calls = json.dumps(message["tool_calls"]) if message.get("tool_calls") else ""
    return " ".join(filter(None, [message.get("content") or "", message.get("reasoning_content") or "", calls]))


def unused_port() -> int:
    """A local port nothing listens on (bound once by us, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_forever() -> None:
    """A standalone server for benchmarks: prints its port, serves until killed."""
    with FakeOpenAIServer() as standalone:
        print(standalone.port, flush=True)
        threading.Event().wait()


if __name__ == "__main__":  # python -m thinktank.testing.fake_openai_server
    serve_forever()
