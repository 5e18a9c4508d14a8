"""A backend for any OpenAI-compatible server: llama.cpp, vLLM, SGLang, OpenAI.

    async with OpenAICompatBackend("http://127.0.0.1:8080/v1") as backend:
        response = await backend.generate(GenerationRequest.from_prompt("hi", "m"))

This module is the I/O; the jobs around it have their own modules: the request body
(`openai_payload`), reading answers and gathering streamed choices (`openai_parse`), SSE
(`sse`), httpx errors translated to the thinktank error tree (`http_errors`), and the one
retry policy (`retry`: jittered exponential backoff for connection errors, timeouts, 429
and 5xx, honouring `Retry-After`). `stream` reads the server's SSE chunks (retrying only
until the server answers) and takes the usage from the `stream_options.include_usage`
chunk; without one it counts a token per content chunk and marks the usage as estimated.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from thinktank._aio import gather_all
from thinktank.backends.base import Backend, Capabilities, StreamEvent
from thinktank.backends.http_errors import map_httpx_errors, status_error
from thinktank.backends.openai_parse import ChoiceCollector, OneChoiceStream, model_ids, parse_completion, parse_embeddings
from thinktank.backends.openai_payload import chat_payload, embedding_payload, streamed
from thinktank.backends.retry import RetryPolicy
from thinktank.backends.sse import SSEChunks
from thinktank.exceptions import BackendError, BackendUnreachable
from thinktank.types import BackendResponse, EmbeddingRequest, EmbeddingResponse, GenerationRequest

__all__ = ["OpenAICompatBackend"]


class OpenAICompatBackend(Backend):
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        max_concurrency: int = 8,
        supports_native_n: bool = True,
        seeded_native_n: bool = False,
        max_n_per_call: int = 256,
        count_choice_tokens: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        explain_unreachable: Callable[[], str | None] | None = None,
        supports_embeddings: bool = True,
    ) -> None:
        """`count_choice_tokens`: for servers whose `usage` covers one choice only (llama-server), a call with
        n > 1 is streamed and each choice's tokens are taken from the usage chunk the server sends after that
        choice's last chunk (see `openai_parse.ChoiceCollector`).

        `explain_unreachable`: for a server whose process we own; asked when a connection fails, it returns why
        the server is gone (exit status, log) or None if it still runs. A gone server raises `BackendDied`,
        which is not retried."""
        self.explain_unreachable = explain_unreachable
        self.base_url = base_url.rstrip("/")
        self.name = self.base_url
        self.capabilities = Capabilities(
            max_concurrency, supports_native_n, seeded_native_n, max_n_per_call, supports_embeddings=supports_embeddings
        )
        self.count_choice_tokens = count_choice_tokens
        self.retry_policy = RetryPolicy(max_retries, backoff_base_s, backoff_max_s)
        self._chat_url = f"{self.base_url}/chat/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Keep every pooled connection alive: httpcore closes an idle connection whenever the
        # pool holds more than max_keepalive connections in total, so a smaller keep-alive
        # limit makes each call under load open a fresh TCP connection.
        pool_size = max(max_concurrency * 2, 16)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
            transport=transport,
        )

    def _check_open(self) -> None:
        if self._client.is_closed:
            raise BackendError(f"backend {self.base_url} is closed", self.base_url)

    async def _call_json(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """One call (POST with `payload`, else GET) whose answer must be a JSON object; no retries."""
        url = f"{self.base_url}{path}"
        with map_httpx_errors(url, self.explain_unreachable):
            if payload is None:
                response = await self._client.get(path)
            else:
                response = await self._client.post(path, json=payload)
        if response.status_code >= 400:
            raise status_error(response, url)
        try:
            data = response.json()
        except ValueError as exc:
            raise BackendError(f"backend {url} returned invalid JSON: {response.text[:200]!r}", url) from exc
        if not isinstance(data, dict):
            raise BackendError(f"backend {url} returned JSON that is not an object: {response.text[:200]!r}", url)
        return data

    async def post_with_retries(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST a chat completion under the retry policy; the answer as a JSON object."""
        return await self.retry_policy.call(lambda: self._call_json("/chat/completions", payload))

    async def generate(self, request: GenerationRequest) -> BackendResponse:
        self._check_open()
        if request.n > 1 and not self.capabilities.supports_native_n:
            return await self._fan_out(request)
        started = time.perf_counter()
        per_choice_usage = request.n > 1 and self.count_choice_tokens
        if per_choice_usage:
            data = await self.retry_policy.call(lambda: self._collect_choices(chat_payload(request)))
        else:
            data = await self.post_with_retries(chat_payload(request))
        latency = time.perf_counter() - started
        return parse_completion(data, request, latency, url=self.base_url, per_choice_usage=per_choice_usage)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if request.n != 1:
            raise ValueError(f"stream makes one sample, got n={request.n}")
        self._check_open()
        started = time.perf_counter()
        gathered = OneChoiceStream()
        async with self._open_stream(streamed(chat_payload(request))) as response:
            chunks = SSEChunks(response, self._chat_url, self.explain_unreachable)
            async for chunk in chunks:
                for text in gathered.feed(chunk):
                    yield StreamEvent(delta=text)
            if tail := gathered.tail():
                yield StreamEvent(delta=tail)
            if not chunks.done and gathered.finish is None:
                raise BackendUnreachable(f"backend {self._chat_url} ended the stream before its last chunk", self._chat_url)
        response_ = gathered.response(request.model, time.perf_counter() - started)
        yield StreamEvent(response=response_, usage_estimated=gathered.usage is None)

    @contextlib.asynccontextmanager
    async def _open_stream(self, payload: dict[str, Any], *, retry: bool = True) -> AsyncIterator[httpx.Response]:
        """POST and wait for the response head, retrying like `post_with_retries`; closing it ends the generation."""
        response = await (self.retry_policy.call(lambda: self._send(payload)) if retry else self._send(payload))
        try:
            yield response
        finally:
            await response.aclose()

    async def _send(self, payload: dict[str, Any]) -> httpx.Response:
        """One streamed POST, up to the response head; an error status is read, closed and raised."""
        request = self._client.build_request("POST", "/chat/completions", json=payload)
        with map_httpx_errors(self._chat_url, self.explain_unreachable):
            response = await self._client.send(request, stream=True)
            if response.status_code >= 400:
                await response.aread()
                await response.aclose()
                raise status_error(response, self._chat_url)
        return response

    async def _collect_choices(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One streamed call of n choices, gathered into a chat completion whose choices carry their own usage."""
        collector = ChoiceCollector()
        async with self._open_stream(streamed(payload), retry=False) as response:
            async for chunk in SSEChunks(response, self._chat_url, self.explain_unreachable):
                collector.feed(chunk)
        return collector.completion(payload["n"], self._chat_url)

    async def _fan_out(self, request: GenerationRequest) -> BackendResponse:
        """A server without `n` gives one choice per call: make n calls (seeds s, s+1, ...) and add up their usage."""
        started = time.perf_counter()
        parts = await gather_all(
            self.generate(request.with_(n=1, seed=None if request.seed is None else request.seed + i)) for i in range(request.n)
        )
        return BackendResponse(
            choices=[part.choices[0] for part in parts],
            prompt_tokens=sum(part.prompt_tokens for part in parts),
            cached_prompt_tokens=sum(part.cached_prompt_tokens for part in parts),
            latency_s=time.perf_counter() - started,
            model=parts[0].model,
        )

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """One `/embeddings` call for all of the request's texts, under the retry policy."""
        self._check_open()
        started = time.perf_counter()
        data = await self.retry_policy.call(lambda: self._call_json("/embeddings", embedding_payload(request)))
        return parse_embeddings(data, request, time.perf_counter() - started, url=f"{self.base_url}/embeddings")

    async def list_models(self) -> list[str]:
        """The model names the server serves; a malformed answer is a `BackendError`."""
        data = await self.retry_policy.call(lambda: self._call_json("/models"))
        return model_ids(data, f"{self.base_url}/models")

    async def aclose(self) -> None:
        await self._client.aclose()
