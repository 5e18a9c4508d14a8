"""Embedded servers on one machine take turns on its cores instead of decoding at the same time.

Two llama-servers that each run a thread per core and decode at once lose ~85% of their throughput: every token
ends at a barrier of each server's threads, and a thread waiting for a core the other server holds stalls its
whole server. Pinning them to separate cores avoids that but halves each one's speed whenever the other is idle,
and neither `--poll 0` nor SCHED_IDLE for one of them helps (docs/benchmarks.md, "Several embedded servers on one
machine"). So the engine's side arbitrates: a server's calls run while it holds the turn; when another server's
call is waiting, the holder admits no new calls, finishes the ones it has, and hands the turn on. Each server then
decodes at its full speed and the cores never serve two servers at once.

    turns = Turns()
    small = TakesTurns(llama_server_backend(...), turns, "0.5b")
    large = TakesTurns(llama_server_backend(...), turns, "1.5b")
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from thinktank.backends.base import Backend, BackendResponse, StreamEvent, aclose_events
from thinktank.types import EmbeddingRequest, EmbeddingResponse, GenerationRequest


class Turns:
    """Who may run calls now. Turns pass in the order servers started waiting, so none starves."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._holder: str | None = None
        self._active = 0
        self._waiting: dict[str, int] = {}  # server -> calls waiting; insertion order is the queue of servers
        self._issued = 0  # tickets handed out; a call's ticket orders it against the start of a turn
        self._turn_began_at_ticket = -1  # calls that were waiting when the turn began all enter with it

    @property
    def holder(self) -> str | None:
        return self._holder

    @contextlib.asynccontextmanager
    async def turn(self, server: str) -> AsyncIterator[None]:
        await self._enter(server)
        try:
            yield
        finally:
            await self._leave()

    async def _enter(self, server: str) -> None:
        async with self._changed:
            ticket, self._issued = self._issued, self._issued + 1
            self._waiting[server] = self._waiting.get(server, 0) + 1
            try:
                await self._changed.wait_for(lambda: self._may_enter(server, ticket))
            finally:
                self._waiting[server] -= 1
                if not self._waiting[server]:
                    del self._waiting[server]
                self._changed.notify_all()  # a cancelled waiter may have been the one others deferred to
            if self._holder != server:
                self._holder, self._turn_began_at_ticket = server, self._issued - 1
            self._active += 1

    async def _leave(self) -> None:
        async with self._changed:
            self._active -= 1
            if self._active == 0:
                self._holder = None
            self._changed.notify_all()

    def _may_enter(self, server: str, ticket: int) -> bool:
        if self._holder is None:
            return next(iter(self._waiting), server) == server  # the longest-waiting server goes first
        if self._holder != server:
            return False
        others_waiting = any(name != server for name in self._waiting)
        return not others_waiting or ticket <= self._turn_began_at_ticket


class TakesTurns(Backend):
    """A backend whose calls each hold `server`'s turn for as long as they run (streams until closed)."""

    def __init__(self, inner: Backend, turns: Turns, server: str) -> None:
        self.inner = inner
        self.turns = turns
        self.server = server
        self.capabilities = inner.capabilities
        self.name = inner.name

    async def generate(self, request: GenerationRequest) -> BackendResponse:
        async with self.turns.turn(self.server):
            return await self.inner.generate(request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        async with self.turns.turn(self.server):
            events = self.inner.stream(request)
            try:
                async for event in events:
                    yield event
            finally:
                await aclose_events(events)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        async with self.turns.turn(self.server):
            return await self.inner.embed(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
