"""The backend contract: one coroutine that turns a request into completions.

Shaped like an httpx transport: `generate`, `aclose`, `async with`. Techniques never
see a backend; they go through the engine, which owns caching, limits and accounting.
What a server can do that changes how the engine schedules calls is declared once, in
a frozen `Capabilities` on the backend, so the engine reads one typed record instead of
probing loose attributes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from types import TracebackType

from thinktank.exceptions import BackendError
from thinktank.types import BackendResponse, EmbeddingRequest, EmbeddingResponse, GenerationRequest


@dataclass(frozen=True)
class Capabilities:
    """What a server can do, as far as the engine's scheduling is concerned; frozen so it cannot drift mid-run."""

    #: how many requests the server runs at once (llama-server: its slots)
    max_concurrency: int = 8
    #: True when one request with n > 1 returns n choices with correct per-choice usage
    supports_native_n: bool = False
    #: True when a request with seed s and n choices returns the samples of seeds s, s+1, … (llama-server):
    #: then seeded samples can share one call, and the server evaluates their common prompt once
    seeded_native_n: bool = False
    #: the most choices one call may ask for (llama-server: its slots; more would never be scheduled)
    max_n_per_call: int = 256
    #: True when `embed` works (an OpenAI-compatible `/v1/embeddings` endpoint); the engine refuses embeddings otherwise
    supports_embeddings: bool = False


@dataclass
class StreamEvent:
    """One piece of a streamed generation: a text delta; the last event carries the whole response and its usage."""

    delta: str = ""
    response: BackendResponse | None = None
    usage_estimated: bool = False  # the server sent no usage: tokens were counted from the stream


class Backend(ABC):
    #: what the server can do; a subclass sets it per instance (from its constructor) or per class
    capabilities: Capabilities = Capabilities()
    #: a short label for traces and errors, e.g. the base URL
    name: str = "backend"

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Refuse a subclass that declares a capability the old way (`seeded_native_n = True` in its body): the
        engine reads only `capabilities`, so such a declaration would be silently ignored."""
        super().__init_subclass__(**kwargs)
        legacy = sorted(f.name for f in fields(Capabilities) if f.name in cls.__dict__)
        if legacy:
            raise TypeError(
                f"{cls.__qualname__} sets {', '.join(legacy)} as class attributes; backend capabilities are declared"
                " in one frozen dataclass: `capabilities = Capabilities(...)` (or set self.capabilities in __init__)"
            )

    @abstractmethod
    async def generate(self, request: GenerationRequest) -> BackendResponse:
        """Run one request. Must raise a `BackendError` subclass on failure."""

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        """Yield text deltas of one sample (n=1) as they are generated, then one event with the whole response.

        This default generates the whole text and yields it at once; servers that can stream override it.
        Closing the iterator early must cancel the generation.
        """
        response = await self.generate(request)
        if response.choices and response.choices[0].text:
            yield StreamEvent(delta=response.choices[0].text)
        yield StreamEvent(response=response)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Embed `request.texts`, one vector each; a backend that can overrides this and sets `supports_embeddings`."""
        raise BackendError(f"backend {self.name} does not serve embeddings", self.name)

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections; idempotent."""

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def aclose_events(iterator: AsyncIterator[StreamEvent]) -> None:
    """Close a backend's event stream (an async generator) so the generation behind it stops."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
