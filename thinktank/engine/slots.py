"""A backend's parallel slots, shared by the calls in flight: a call of k samples holds k slots.

asyncio.Semaphore takes one unit at a time; taking k in a loop lets two waiting calls each hold part
of what they need and deadlock. Here a call waits until all k are free, first come first served, so
a large call is never starved by a stream of small ones.

    slots = Slots(4)
    async with slots.hold(3):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class Slots:
    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.free = self.total
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, k: int = 1) -> AsyncIterator[None]:
        k = min(max(1, k), self.total)  # a call wider than the backend waits for all of it
        await self._acquire(k)
        try:
            yield
        finally:
            self._release(k)

    async def _acquire(self, k: int) -> None:
        if not self._waiting and self.free >= k:
            self.free -= k
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (k, granted)
        self._waiting.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(k)  # granted just as we were cancelled: hand the slots on
            else:
                with contextlib.suppress(ValueError):  # a release may already have dropped our cancelled entry
                    self._waiting.remove(entry)
                self._wake()  # we may have been blocking smaller calls behind us
            raise

    def _release(self, k: int) -> None:
        self.free += k
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free:
            k, granted = self._waiting.popleft()
            if granted.done():
                continue
            self.free -= k
            granted.set_result(None)
