"""What one chat-completion request does, apart from HTTP: pick the architecture, build the query's
context (budget, overrides), wait for a slot of the caller's key, run under the request timeout, and
account the run in the metrics. Routes stay thin.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass

from thinktank.arch import Architecture
from thinktank.engine.engine import Context, Engine
from thinktank.serve import mapping, passthrough
from thinktank.serve.errors import ServeError, as_serve_error
from thinktank.serve.limits import KeyLimiter
from thinktank.serve.metrics import Metrics
from thinktank.serve.passthrough import Replies
from thinktank.serve.responses import check_answer, completion
from thinktank.serve.streaming import ChunkFormat, run_streaming, sse_body
from thinktank.serve.wire import ChatCompletion, ChatCompletionRequest, ModelCard, ModelList
from thinktank.tasks.base import TaskInput
from thinktank.telemetry import TraceSink


@dataclass(frozen=True)
class ServeSettings:
    api_key: str | None = None  # None or "": no auth
    max_concurrency_per_key: int = 16
    queue_per_key: int = 64
    timeout_s: float = 600.0  # per request, queueing excluded
    max_body_bytes: int = 1 << 20
    keepalive_s: float = 5.0  # SSE comment interval while an architecture works
    use_cache: bool = True
    corpus: str | None = None  # `serve --corpus`: requests are retrieval QA over it (`mapping.task_input`)


@dataclass
class Query:
    """One admitted request, ready to run."""

    request_id: str
    arch: Architecture
    task: TaskInput
    ctx: Context
    replies: Replies | None = None  # tool calls and reasoning of the candidates, where the tail generate keeps them


@dataclass
class OpenStream:
    """An SSE body that holds its key's slot; `aclose` (always called by the response) releases it."""

    chunks: AsyncIterator[str]
    slot: AsyncExitStack

    async def aclose(self) -> None:
        aclose = getattr(self.chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        await self.slot.aclose()


class ChatService:
    def __init__(
        self, engine: Engine, architectures: Mapping[str, Architecture], settings: ServeSettings, metrics: Metrics,
        telemetry: TraceSink | None = None,
    ) -> None:  # fmt: skip
        self.engine, self.architectures, self.settings, self.metrics = engine, dict(architectures), settings, metrics
        self.telemetry = telemetry
        self.limiter = KeyLimiter(settings.max_concurrency_per_key, settings.queue_per_key)
        self.started = int(time.time())

    def architecture(self, name: str) -> Architecture:
        if name not in self.architectures:
            available = ", ".join(sorted(self.architectures))
            raise ServeError(f"unknown model {name!r}; available: {available}", 404, param="model", code="model_not_found")
        return self.architectures[name]

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=name, created=self.started) for name in sorted(self.architectures)])

    def prepare(self, body: ChatCompletionRequest, headers: Mapping[str, str]) -> Query:
        """Everything that can refuse a request before it queues (404, 400, 422)."""
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        arch = self.architecture(body.model)
        mapping.check_fields(body)
        budget, overrides = mapping.budget(body, headers), mapping.overrides(body)
        arch, replies, tool_turns = passthrough.for_request(arch, mapping.client_fields(body, arch), streaming=body.stream)
        task = mapping.task_input(body, request_id, corpus=self.settings.corpus, tool_turns=tool_turns)
        ctx = self.engine.context(budget, name=request_id, use_cache=self.settings.use_cache, overrides=overrides)
        return Query(request_id, arch, task, ctx, replies)

    def finished(self, q: Query, headers: Mapping[str, str]) -> None:
        """Account a run that ended (answered, failed or cut): metrics, and its trace (a child of the caller's
        `traceparent`) to the OTLP endpoint."""
        q.ctx.node.close()
        self.metrics.observe_run(q.arch.name, q.ctx.node)
        if self.telemetry is not None:
            attributes = {"thinktank.architecture": q.arch.name, "thinktank.request.id": q.request_id}
            self.telemetry.export(q.ctx.node, attributes=attributes, headers=headers)

    async def complete(self, body: ChatCompletionRequest, headers: Mapping[str, str], key: str) -> ChatCompletion:
        q = self.prepare(body, headers)
        async with self.limiter.slot(key):
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    result = await q.arch.run(q.task, q.ctx)
            except Exception as exc:  # answered here: an error escaping the app would also drop the connection
                raise as_serve_error(exc) from exc
            finally:
                self.finished(q, headers)
        latency = time.monotonic() - started
        return completion(q.request_id, int(time.time()), q.arch.name, check_answer(result), body.n, latency, q.replies)

    async def stream(self, body: ChatCompletionRequest, headers: Mapping[str, str], key: str) -> OpenStream:
        """Take a slot now (so a full queue is an HTTP 429, not a stream error), then hand out the SSE body."""
        q = self.prepare(body, headers)
        slot = AsyncExitStack()
        await slot.enter_async_context(self.limiter.slot(key))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        fmt = ChunkFormat(q.request_id, int(time.time()), q.arch.name, body.n, include_usage, q.replies)
        settings = self.settings

        async def chunks() -> AsyncIterator[str]:
            started = time.monotonic()
            try:
                run = functools.partial(run_streaming, q.arch, q.task, q.ctx)
                async for piece in sse_body(run, fmt, keepalive_s=settings.keepalive_s, timeout_s=settings.timeout_s,
                                            started=started):  # fmt: skip
                    yield piece
            finally:
                self.finished(q, headers)
                await slot.aclose()

        return OpenStream(chunks(), slot)
