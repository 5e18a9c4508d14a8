"""Streamed load on a llama-server: tokens that arrive inside a time window, for the benchmarks that measure rates."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence

import httpx

#: an async context every request enters first (e.g. a server's turn on the cores)
Gate = Callable[[], contextlib.AbstractAsyncContextManager[None]]

PROMPT = "Write a Python function that parses a CSV line with quoted fields. Explain each step.\n"


async def stream_tokens(
    client: httpx.AsyncClient, base: str, seed: int, until: float, window_start: float, tokens: int = 256
) -> int:
    """Tokens of one streamed request (at most `tokens`) that arrive inside the window."""
    body = {"prompt": PROMPT, "n_predict": tokens, "temperature": 0.8, "seed": seed, "stream": True, "cache_prompt": True}
    counted = 0
    try:
        async with client.stream("POST", f"{base}/completion", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                now = time.perf_counter()
                if now >= until:
                    break
                chunk = json.loads(line[6:])
                if now >= window_start and chunk.get("content"):
                    counted += 1
    except httpx.RemoteProtocolError:
        pass  # a kept-alive connection the server closed just as we reused it: the next request opens a new one
    return counted


async def keep_busy(
    base: str, load: int, window_start: float, until: float, gate: Gate | None = None, tokens: int = 256
) -> float:
    """Tokens/s of `load` request loops over [window_start, until); each request passes `gate` first if given."""

    async def loop(worker: int) -> int:
        total, seed = 0, worker * 1000
        async with httpx.AsyncClient(timeout=600) as client:
            while time.perf_counter() < until:
                async with gate() if gate is not None else contextlib.nullcontext():
                    total += await stream_tokens(client, base, seed, until, window_start, tokens)
                seed += 1
        return total

    counts = await asyncio.gather(*(loop(w) for w in range(load)))
    return sum(counts) / (until - window_start)


async def measure(
    bases: list[str],
    load: int,
    window: float,
    warmup: float = 3.0,
    gates: Sequence[Gate | None] | None = None,
    tokens: int = 256,
) -> list[float]:
    start = time.perf_counter() + warmup
    gated: Sequence[Gate | None] = gates or [None] * len(bases)
    loads = (keep_busy(b, load, start, start + window, g, tokens) for b, g in zip(bases, gated, strict=True))
    return list(await asyncio.gather(*loads))
