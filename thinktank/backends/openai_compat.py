"""A backend for any OpenAI-compatible server: llama.cpp, vLLM, SGLang, OpenAI.

    async with OpenAICompatBackend("http://127.0.0.1:8080/v1") as backend:
        response = await backend.generate(GenerationRequest.from_prompt("hi", "m"))

httpx errors are translated to the thinktank error tree in one place
(`_map_httpx_errors`); retries with jittered exponential backoff cover connection
errors, timeouts, 429 and 5xx, and honour `Retry-After`. `stream` reads the server's
SSE chunks (retrying only until the server answers) and takes the usage from the
`stream_options.include_usage` chunk; without one it counts a token per content chunk
and marks the usage as estimated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx

from thinktank._aio import gather_all
from thinktank.backends.base import Backend, StreamEvent
from thinktank.exceptions import (
    BackendDied,
    BackendError,
    BackendStatusError,
    BackendTimeout,
    BackendUnreachable,
    ContextLengthExceeded,
    is_retryable,
)
from thinktank.types import BackendResponse, Choice, GenerationRequest

_T = TypeVar("_T")

CONTEXT_LENGTH_MARKERS = (
    "context length",
    "context_length",
    "exceeds the available context",
    "exceed_context_size",
    "too many tokens",
)


@contextlib.contextmanager
def _map_httpx_errors(url: str, explain_unreachable: Callable[[], str | None] | None = None) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise BackendTimeout(f"timed out talking to {url}: {type(exc).__name__}", url) from exc
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        if explain_unreachable is not None and (why := explain_unreachable()) is not None:
            raise BackendDied(why, url) from exc
        raise BackendUnreachable(
            f"cannot reach backend at {url} ({str(exc) or type(exc).__name__});"
            " is the server running? For the embedded one: `thinktank backend start`",
            url,
        ) from exc
    except httpx.HTTPError as exc:  # e.g. a base URL without http://, a proxy refusing us
        raise BackendError(f"request to {url} failed: {type(exc).__name__}: {exc}", url) from exc


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _status_error(response: httpx.Response, url: str) -> BackendStatusError:
    kind = ""
    try:
        body = response.json()
        detail = body.get("error", body)
        message = detail.get("message", str(detail)) if isinstance(detail, dict) else str(detail)
        if isinstance(detail, dict):  # OpenAI: code "context_length_exceeded"; llama.cpp: type "exceed_context_size_error"
            kind = f"{detail.get('type', '')} {detail.get('code', '')}"
    except (ValueError, AttributeError):
        message = response.text[:500]
    text = f"backend {url} answered HTTP {response.status_code}: {message}"
    cls = BackendStatusError
    if response.status_code == 400 and any(m in f"{message} {kind}".lower() for m in CONTEXT_LENGTH_MARKERS):
        cls = ContextLengthExceeded
    return cls(text, response.status_code, url, retry_after=_retry_after_seconds(response))


async def _sse_data(
    response: httpx.Response, url: str, explain_unreachable: Callable[[], str | None] | None = None
) -> AsyncIterator[str]:
    """The `data` of each server-sent event (comments and other fields skipped)."""
    lines: list[str] = []
    with _map_httpx_errors(url, explain_unreachable):
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                lines.append(line[5:].removeprefix(" "))
            elif not line and lines:
                yield "\n".join(lines)
                lines = []
    if lines:
        yield "\n".join(lines)


def _chunk_json(data: str, url: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise BackendError(f"backend {url} streamed invalid JSON: {data[:200]!r}", url) from exc
    if not isinstance(chunk, dict):
        raise BackendError(f"backend {url} streamed JSON that is not an object: {data[:200]!r}", url)
    if chunk.get("error"):
        error = chunk["error"]
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        raise BackendError(f"backend {url} failed while streaming: {message}", url)
    return chunk


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
    ) -> None:
        """`count_choice_tokens`: for servers whose `usage` covers one choice only (llama-server), a call with
        n > 1 is streamed and each choice's tokens are taken from the usage chunk the server sends after that
        choice's last chunk (see `_collect_choices`).

        `explain_unreachable`: for a server whose process we own; asked when a connection fails, it returns why
        the server is gone (exit status, log) or None if it still runs. A gone server raises `BackendDied`,
        which is not retried."""
        self.explain_unreachable = explain_unreachable
        self.base_url = base_url.rstrip("/")
        self.name = self.base_url
        self.max_concurrency = max_concurrency
        self.supports_native_n = supports_native_n
        self.seeded_native_n, self.max_n_per_call, self.count_choice_tokens = seeded_native_n, max_n_per_call, count_choice_tokens
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
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

    def _payload(self, request: GenerationRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "n": request.n,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
        }
        if request.stop:
            payload["stop"] = list(request.stop)
        if request.seed is not None:
            payload["seed"] = request.seed
        payload.update(request.extra_body)
        return payload

    async def _post_once(self, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        with _map_httpx_errors(url, self.explain_unreachable):
            response = await self._client.post("/chat/completions", json=payload)
        if response.status_code >= 400:
            raise _status_error(response, url)
        try:
            data = response.json()
        except ValueError as exc:
            raise BackendError(f"backend {url} returned invalid JSON: {response.text[:200]!r}", url) from exc
        if not isinstance(data, dict):
            raise BackendError(f"backend {url} returned JSON that is not an object: {response.text[:200]!r}", url)
        return data

    def _backoff(self, attempt: int, exc: BaseException) -> float:
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.backoff_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return random.uniform(0, ceiling)  # full jitter

    async def post_with_retries(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._retrying(lambda: self._post_once(payload))

    async def _retrying(self, attempt_call: Callable[[], Awaitable[_T]]) -> _T:
        for attempt in range(self.max_retries + 1):
            try:
                return await attempt_call()
            except Exception as exc:
                if attempt >= self.max_retries or not is_retryable(exc):
                    raise
                await asyncio.sleep(self._backoff(attempt, exc))
        raise AssertionError("unreachable")

    async def generate(self, request: GenerationRequest) -> BackendResponse:
        if self._client.is_closed:
            raise BackendError(f"backend {self.base_url} is closed", self.base_url)
        if request.n > 1 and not self.supports_native_n:
            return await self._fan_out(request)
        started = time.perf_counter()
        if request.n > 1 and self.count_choice_tokens:
            data = await self._retrying(lambda: self._collect_choices(self._payload(request)))
        else:
            data = await self.post_with_retries(self._payload(request))
        latency = time.perf_counter() - started
        try:
            return self._parse(data, request, latency)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"backend {self.base_url} returned a malformed completion: {exc!r}", self.base_url) from exc

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        if request.n != 1:
            raise ValueError(f"stream makes one sample, got n={request.n}")
        if self._client.is_closed:
            raise BackendError(f"backend {self.base_url} is closed", self.base_url)
        url = f"{self.base_url}/chat/completions"
        payload = {**self._payload(request), "stream": True, "stream_options": {"include_usage": True}}
        started = time.perf_counter()
        parts: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] | None = None
        async with self._open_stream(payload) as response:
            async for data in _sse_data(response, url, self.explain_unreachable):
                if data.strip() == "[DONE]":
                    break
                chunk = _chunk_json(data, url)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") or ""
                    finish = choice.get("finish_reason") or finish
                    if text:
                        parts.append(text)
                        yield StreamEvent(delta=text)
            else:
                if finish is None:
                    raise BackendUnreachable(f"backend {url} ended the stream before its last chunk", url)
        text = "".join(parts)
        completion_tokens = int((usage or {}).get("completion_tokens") or len(parts))
        details = (usage or {}).get("prompt_tokens_details") or {}
        response_ = BackendResponse(
            choices=[Choice(text, finish or "stop", completion_tokens)],
            prompt_tokens=int((usage or {}).get("prompt_tokens") or 0),
            cached_prompt_tokens=int(details.get("cached_tokens") or 0),
            latency_s=time.perf_counter() - started,
            model=request.model,
        )
        yield StreamEvent(response=response_, usage_estimated=usage is None)

    @contextlib.asynccontextmanager
    async def _open_stream(self, payload: dict[str, Any], *, retry: bool = True) -> AsyncIterator[httpx.Response]:
        """POST and wait for the response head, retrying like `post_with_retries`; closing it ends the generation."""
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.max_retries + 1 if retry else 1):
            try:
                request = self._client.build_request("POST", "/chat/completions", json=payload)
                with _map_httpx_errors(url, self.explain_unreachable):
                    response = await self._client.send(request, stream=True)
                    if response.status_code >= 400:
                        await response.aread()
                        await response.aclose()
                        raise _status_error(response, url)
                break
            except Exception as exc:
                if not retry or attempt >= self.max_retries or not is_retryable(exc):
                    raise
                await asyncio.sleep(self._backoff(attempt, exc))
        try:
            yield response
        finally:
            await response.aclose()

    async def _collect_choices(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One streamed call of n choices, gathered into a chat completion whose choices carry their own usage.

        llama-server's `usage` for n > 1 covers the first choice only; streamed, it follows each choice's last
        chunk (the one with its finish_reason) with a usage chunk that has no choices. A choice without one is
        counted a token per content chunk. (Per-token logprobs would count them too, at 7% more time per call.)
        """
        url = f"{self.base_url}/chat/completions"
        texts: dict[int, list[str]] = {}
        finish: dict[int, str] = {}
        usage: dict[int, dict[str, Any]] = {}
        last_finished: int | None = None
        model = None
        payload = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        async with self._open_stream(payload, retry=False) as response:
            async for data in _sse_data(response, url, self.explain_unreachable):
                if data.strip() == "[DONE]":
                    break
                chunk = _chunk_json(data, url)
                model = chunk.get("model") or model
                choices = chunk.get("choices") or []
                if not choices and chunk.get("usage") and last_finished is not None:
                    usage[last_finished], last_finished = chunk["usage"], None
                for choice in choices:
                    index = int(choice.get("index") or 0)
                    parts = texts.setdefault(index, [])
                    if text := (choice.get("delta") or {}).get("content"):
                        parts.append(text)
                    if choice.get("finish_reason"):
                        finish[index], last_finished = choice["finish_reason"], index
        unfinished = sorted(set(range(payload["n"])) - set(finish))
        if unfinished:
            raise BackendUnreachable(f"backend {url} ended the stream before choice(s) {unfinished} finished", url)
        choices = [
            {"index": i, "message": {"content": "".join(parts)}, "finish_reason": finish[i],
             "usage": usage.get(i) or {"completion_tokens": len(parts)}}
            for i, parts in sorted(texts.items())
        ]  # fmt: skip
        return {"choices": choices, "usage": usage.get(0) or {}, "model": model}

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

    def _parse(self, data: dict[str, Any], request: GenerationRequest, latency: float) -> BackendResponse:
        raw_choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))[: request.n]
        if len(raw_choices) < request.n:
            hint = " (does the server support `n`? if not, pass supports_native_n=False)" if request.n > 1 else ""
            raise BackendError(
                f"backend {self.base_url} returned {len(raw_choices)} choice(s) for n={request.n}{hint}", self.base_url
            )
        usage = data.get("usage") or {}
        completion_total = int(usage.get("completion_tokens") or 0)
        texts = [(c.get("message") or {}).get("content") or "" for c in raw_choices]
        if request.n > 1 and self.count_choice_tokens:
            shares = [int(c["usage"].get("completion_tokens") or 0) for c in raw_choices]
        else:
            # Split the call's completion tokens over choices in proportion to their length;
            # exact when there is one choice.
            lengths = [max(1, len(t)) for t in texts]
            shares = [completion_total * n // sum(lengths) for n in lengths]
            shares[0] += completion_total - sum(shares)
        details = usage.get("prompt_tokens_details") or {}
        return BackendResponse(
            choices=[
                Choice(text, c.get("finish_reason") or "stop", share)
                for text, c, share in zip(texts, raw_choices, shares, strict=True)
            ],
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            cached_prompt_tokens=int(details.get("cached_tokens") or 0),
            latency_s=latency,
            model=str(data.get("model") or request.model),
        )

    async def list_models(self) -> list[str]:
        url = f"{self.base_url}/models"
        with _map_httpx_errors(url, self.explain_unreachable):
            response = await self._client.get("/models")
        if response.status_code >= 400:
            raise _status_error(response, url)
        return [m["id"] for m in response.json().get("data", [])]

    async def aclose(self) -> None:
        await self._client.aclose()
