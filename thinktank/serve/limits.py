"""Overload protection: a per-key concurrency limit with a bounded queue, and a body size limit.

Each API key (the client's address when auth is off) runs at most `max_concurrent` requests; up to
`max_queue` more wait in arrival order; a request beyond that is refused at once with 429 and a
Retry-After estimated from how long requests have recently held a slot. Refusing early keeps latency
bounded for the requests that are admitted instead of letting every client time out.

    limiter = KeyLimiter(max_concurrent=4, max_queue=16)
    async with limiter.slot(key):
        ...  # run the request
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from thinktank.serve.errors import ServeError, error_response


@dataclass
class _Lane:
    max_concurrent: int
    slots: asyncio.Semaphore = field(init=False)
    active: int = 0
    waiting: int = 0

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.max_concurrent)

    @property
    def idle(self) -> bool:
        return self.active == 0 and self.waiting == 0


class KeyLimiter:
    def __init__(self, max_concurrent: int, max_queue: int) -> None:
        if max_concurrent < 1 or max_queue < 0:
            raise ValueError("max_concurrent must be >= 1 and max_queue >= 0")
        self.max_concurrent, self.max_queue = max_concurrent, max_queue
        self._lanes: dict[str, _Lane] = {}
        self._mean_hold_s = 1.0  # moving average of how long a request holds a slot

    def retry_after_s(self, lane: _Lane) -> int:
        """Seconds until the queue has likely moved up by one place, at least 1."""
        rounds = (lane.waiting + 1) / self.max_concurrent
        return max(1, min(60, math.ceil(self._mean_hold_s * rounds)))

    def in_flight(self) -> int:
        return sum(lane.active for lane in self._lanes.values())

    def queued(self) -> int:
        return sum(lane.waiting for lane in self._lanes.values())

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        lane = self._lanes.setdefault(key, _Lane(self.max_concurrent))
        if lane.slots.locked() and lane.waiting >= self.max_queue:
            raise ServeError(
                f"too many concurrent requests for this key ({lane.active} running, {lane.waiting} queued); retry later",
                429,
                type="rate_limit_error",
                code="queue_full",
                retry_after=self.retry_after_s(lane),
            )
        lane.waiting += 1
        try:
            await lane.slots.acquire()
        except BaseException:
            lane.waiting -= 1
            self._drop_if_idle(key, lane)
            raise
        lane.waiting -= 1
        lane.active += 1
        started = time.monotonic()
        try:
            yield
        finally:
            lane.active -= 1
            lane.slots.release()
            self._mean_hold_s = 0.8 * self._mean_hold_s + 0.2 * (time.monotonic() - started)
            self._drop_if_idle(key, lane)

    def _drop_if_idle(self, key: str, lane: _Lane) -> None:
        if lane.idle and self._lanes.get(key) is lane:
            del self._lanes[key]


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over `max_bytes` (declared or streamed); the app sees the whole body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, declared)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, declared)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # later reads wait for the disconnect, as the server would
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, declared: bytes) -> None:
        if declared.isdigit():
            message, status = f"request body exceeds the limit of {self.max_bytes} bytes", 413
        else:
            message, status = "invalid Content-Length header", 400
        code = "request_too_large" if status == 413 else "invalid_content_length"
        response = error_response(ServeError(message, status, code=code))
        response.headers["Connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)
