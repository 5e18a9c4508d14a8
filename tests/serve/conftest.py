"""Serve architectures over test backends on a live loopback server (`serving`), and the backends themselves."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from thinktank.arch import build_architecture
from thinktank.backends import ScriptedBackend, StreamEvent
from thinktank.backends.base import Backend
from thinktank.engine import Engine
from thinktank.serve import ServeSettings, create_app
from thinktank.types import GenerationRequest

from .live import LiveServer

MODEL = "m"
SPECS: dict[str, dict[str, Any]] = {
    "single": {"name": "single", "layers": [{"generate": {"n": 1, "max_tokens": 64}}]},
    "vote-4": {"name": "vote-4", "layers": [{"generate": {"n": 4, "temperature": 0.8}}, {"vote": {}}]},
}


class WordStreamBackend(ScriptedBackend):
    """ScriptedBackend that streams its reply word by word (a real `stream`, unlike the base default)."""

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        response = await self.generate(request)
        for word in re.findall(r"\S+\s*", response.choices[0].text):
            yield StreamEvent(delta=word)
        yield StreamEvent(response=response)


@contextmanager
def serving(backend: Backend, specs: dict[str, dict[str, Any]] | None = None, **settings: Any) -> Iterator[LiveServer]:
    """Serve `specs` (default: SPECS) over `backend` as model "m"; settings go to ServeSettings."""
    archs = [build_architecture(spec, [MODEL]) for spec in (specs or SPECS).values()]
    options = {"use_cache": False, "keepalive_s": 0.05} | settings
    server = LiveServer(create_app(Engine({MODEL: backend}), archs, ServeSettings(**options))).start()
    try:
        yield server
    finally:
        server.stop()


def numbered(request: GenerationRequest, i: int) -> str:
    """Sample i of a call answers 'answer <i mod 3>', so a vote over 4 samples has distinct answers."""
    return f"answer {i % 3}"


@pytest.fixture
def backend() -> WordStreamBackend:
    return WordStreamBackend(numbered)


@pytest.fixture
def live(backend: WordStreamBackend) -> Iterator[LiveServer]:
    with serving(backend) as server:
        yield server


class Gate:
    """Backend calls that block until `open()`, recording (thread-safely) that they started or were cancelled."""

    def __init__(self, text: str = "released") -> None:
        self.text = text
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open: asyncio.Event | None = None

    async def handler(self, request: GenerationRequest, i: int) -> str:
        if self._open is None:  # created on the server's loop
            self._loop, self._open = asyncio.get_running_loop(), asyncio.Event()
        self.started.set()
        try:
            await self._open.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return self.text

    def open(self) -> None:
        assert self._loop is not None and self._open is not None, "no call has started"
        self._loop.call_soon_threadsafe(self._open.set)
