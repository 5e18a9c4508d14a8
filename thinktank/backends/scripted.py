"""An in-process backend driven by a Python function, for unit tests of techniques.

    async def reply(request, sample_index):  # -> text (str) or a Choice
        return "42"
    backend = ScriptedBackend(reply)

Like httpx's MockTransport: no sockets, but usage is still counted (whitespace tokens)
so accounting code is exercised. `embedder` (text -> vector) makes it serve embeddings too.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Awaitable, Callable

from thinktank.backends.base import Backend, Capabilities
from thinktank.types import BackendResponse, Choice, EmbeddingRequest, EmbeddingResponse, GenerationRequest

Reply = str | Choice
Handler = Callable[[GenerationRequest, int], Reply | Awaitable[Reply]]
Embedder = Callable[[str], list[float]]


def count_words(text: str) -> int:
    return len(text.split())


class ScriptedBackend(Backend):
    def __init__(
        self,
        handler: Handler,
        *,
        max_concurrency: int = 8,
        supports_native_n: bool = False,
        seeded_native_n: bool = False,
        max_n_per_call: int = 256,
        name: str = "scripted",
        delay_s: float = 0.0,
        embedder: Embedder | None = None,
    ) -> None:
        self.handler = handler
        self.embedder = embedder
        self.capabilities = Capabilities(
            max_concurrency, supports_native_n, seeded_native_n, max_n_per_call, supports_embeddings=embedder is not None
        )
        self.embed_requests: list[EmbeddingRequest] = []
        self.name = name
        self.delay_s = delay_s
        self.requests: list[GenerationRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._counter = itertools.count()

    async def generate(self, request: GenerationRequest) -> BackendResponse:
        self.requests.append(request)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        started = time.perf_counter()
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            choices = []
            for _ in range(request.n):
                reply = self.handler(request, next(self._counter))
                if inspect.isawaitable(reply):
                    reply = await reply
                if isinstance(reply, str):
                    reply = Choice(reply, "stop", max(1, count_words(reply)))
                choices.append(reply)
        finally:
            self.in_flight -= 1
        prompt_tokens = sum(count_words(m["content"]) for m in request.messages)
        return BackendResponse(
            choices=choices,
            prompt_tokens=prompt_tokens,
            latency_s=time.perf_counter() - started,
            model=request.model,
        )

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        if self.embedder is None:
            return await super().embed(request)
        self.embed_requests.append(request)
        started = time.perf_counter()
        vectors = [list(self.embedder(text)) for text in request.texts]
        return EmbeddingResponse(
            vectors, sum(count_words(t) for t in request.texts), time.perf_counter() - started, request.model
        )
