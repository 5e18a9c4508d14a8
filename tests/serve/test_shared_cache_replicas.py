"""Two `thinktank serve` replicas (each its own app, engine, event loop and backend) share one PostgreSQL cache."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from thinktank.arch import build_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.engine.pg_cache import PostgresCache
from thinktank.serve import ServeSettings, create_app
from thinktank.types import GenerationRequest

from .conftest import MODEL, SPECS
from .live import LiveServer

pytestmark = pytest.mark.postgres


def lock_waiters(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()
    return int(row[0]) if row else 0


def replica(url: str, backend: ScriptedBackend) -> LiveServer:
    @contextlib.asynccontextmanager
    async def engine() -> AsyncIterator[Engine]:  # opened in the replica's own loop, as `thinktank serve --cache` does
        cache = await PostgresCache.open(url)
        try:
            yield Engine({MODEL: backend}, cache=cache)
        finally:
            await cache.aclose()

    archs = [build_architecture(SPECS["single"], [MODEL])]
    return LiveServer(create_app(engine, archs, ServeSettings(use_cache=True))).start()


@pytest.mark.timeout(120)
def test_identical_requests_to_two_replicas_make_one_backend_call(postgres_url):
    calls: list[str] = []

    def answer_once_the_other_replica_waits(name: str):
        async def reply(request: GenerationRequest, i: int) -> str:
            calls.append(name)
            deadline = time.monotonic() + 20
            while await asyncio.to_thread(lock_waiters, postgres_url) < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return f"answer from {name}"

        return reply

    servers = [replica(postgres_url, ScriptedBackend(answer_once_the_other_replica_waits(n))) for n in ("a", "b")]
    try:
        body = {"model": "single", "messages": [{"role": "user", "content": "same question"}], "seed": 3,
                "temperature": 0.5}  # fmt: skip
        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(lambda s: httpx.post(f"{s.url}/v1/chat/completions", json=body, timeout=60), servers))
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        texts = {r.json()["choices"][0]["message"]["content"] for r in responses}
        assert len(calls) == 1 and texts == {f"answer from {calls[0]}"}
        hits = sorted(r.json()["thinktank"]["cache_hits"] for r in responses)
        assert hits == [0, 1]  # the replica that waited served the other's sample from the shared cache
        later = httpx.post(f"{servers[0].url}/v1/chat/completions", json=body, timeout=60)
        assert later.json()["choices"][0]["message"]["content"] in texts and len(calls) == 1
    finally:
        for server in servers:
            server.stop()
