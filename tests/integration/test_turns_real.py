"""Two real embedded llama-servers opened by one engine take turns: every call answers, and the servers' own
`/slots` never show both decoding at once while the engine drives them; `take_turns=False` lets them overlap."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from thinktank.backends.base import Backend
from thinktank.backends.turns import TakesTurns
from thinktank.runtime import open_engine
from thinktank.types import GenerationRequest

pytestmark = pytest.mark.integration

SMALL, TINY = "qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"


async def busy(client: httpx.AsyncClient, base_url: str) -> bool:
    slots = (await client.get(f"{base_url.removesuffix('/v1')}/slots")).json()
    return any(slot.get("is_processing") for slot in slots)


async def overlaps_while(calls: asyncio.Future[object], urls: list[str]) -> tuple[int, int]:
    """(the longest run of consecutive polls in which both servers were decoding, polls) until `calls` are done.
    A run, not a count: at a hand-over one poll may catch the old holder's slot an instant before it is released."""
    longest = run = polls = 0
    async with httpx.AsyncClient(timeout=5) as client:
        while not calls.done():
            states = await asyncio.gather(*(busy(client, url) for url in urls))
            run = run + 1 if all(states) else 0
            longest = max(longest, run)
            polls += 1
            await asyncio.sleep(0.05)  # sampling the servers' state, not pacing calls
    return longest, polls


async def run_both(backends: list[Backend]) -> tuple[int, int]:
    """Four calls to each server at once, straight to `backends`; the longest stretch both servers decoded at once."""
    requests = [
        GenerationRequest.from_prompt(f"Count from 1 to 30, variant {i}.", model, max_tokens=32, temperature=0.7, seed=i)
        for i in range(4)
        for model in (SMALL, TINY)
    ]
    by_model = dict(zip((SMALL, TINY), backends, strict=True))
    calls = asyncio.ensure_future(asyncio.gather(*(by_model[r.model].generate(r) for r in requests)))
    urls = [b.inner.name if isinstance(b, TakesTurns) else b.name for b in backends]
    both, polls = await overlaps_while(calls, urls)
    assert all(response.choices[0].text for response in await calls)
    assert polls >= 5
    return both, polls


async def test_two_embedded_servers_take_turns() -> None:
    async with open_engine([SMALL, TINY], slots=2, use_cache=False) as engine:
        gated = [engine.backends[SMALL], engine.backends[TINY]]
        assert all(isinstance(b, TakesTurns) for b in gated)
        both, polls = await run_both(gated)
        assert both <= 1, f"both servers decoded at once for {both} consecutive polls (of {polls})"
        # the same servers without the turns: they overlap, so the check above can fail
        both, polls = await run_both([b.inner for b in gated if isinstance(b, TakesTurns)])
        assert both >= 3, f"without turns the servers should overlap; longest overlap {both} polls (of {polls})"


async def test_take_turns_false_leaves_the_backends_as_they_are() -> None:
    async with open_engine([SMALL, TINY], slots=1, use_cache=False, take_turns=False) as engine:
        assert not any(isinstance(engine.backends[m], TakesTurns) for m in (SMALL, TINY))
