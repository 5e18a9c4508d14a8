"""Open an engine for a set of models: the wiring shared by `ask`, `eval`, `search` and `serve`.

A model is served by, in order: the pool a backends file (`--backends`) declares
under its name; the remote server given with `backend_url`; a long-lived embedded
server started earlier with `thinktank backend start`; or an embedded llama-server
started now and stopped when the block exits. An embedded server started here decodes
speculatively as `speculation` says for its model (`backends/speculation.py`); a
`backend start` server keeps what it was started with.

The llama-servers on this machine share its cores: when an engine drives more than one, their calls take turns
(`backends/turns.py`), since two servers decoding at once lose most of their throughput to each other.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from thinktank._paths import cache_root
from thinktank._postgres import is_postgres_url
from thinktank.backends.base import Backend
from thinktank.backends.config import BackendsConfig
from thinktank.backends.llama_server import LlamaServer, find_running, llama_server_backend
from thinktank.backends.openai_compat import OpenAICompatBackend
from thinktank.backends.speculation import SpeculationSettings
from thinktank.backends.turns import TakesTurns, Turns
from thinktank.engine import Engine
from thinktank.engine.cache import ResponseCache, SampleCache
from thinktank.models.packs import model_label
from thinktank.usage import PriceTable

CACHE_URL_ENV = "THINKTANK_CACHE_URL"


def default_cache_path() -> Path:
    return cache_root() / "responses.sqlite"


def cache_location(given: str | Path | None = None) -> str | Path:
    """Where the response cache is: `given` (a path or postgresql:// URL), else $THINKTANK_CACHE_URL, else the
    SQLite file under the cache root. A URL comes back as a str, a file as a Path."""
    location = given or os.environ.get(CACHE_URL_ENV) or default_cache_path()
    return location if isinstance(location, str) and is_postgres_url(location) else Path(location)


async def open_cache(location: str | Path) -> SampleCache:
    """The cache at `location`: a postgresql:// URL (needs thinktank[postgres]) or a SQLite file path."""
    if isinstance(location, str) and is_postgres_url(location):
        from thinktank.engine.pg_cache import PostgresCache

        return await PostgresCache.open(location)
    return ResponseCache(location)


@contextlib.asynccontextmanager
async def open_engine(
    models: list[str],
    *,
    backend_url: str | None = None,
    api_key: str | None = None,
    slots: int = 4,
    use_cache: bool = True,
    cache_path: str | Path | None = None,
    prices: PriceTable | None = None,
    pools: BackendsConfig | None = None,
    speculation: SpeculationSettings | None = None,
    take_turns: bool = True,
) -> AsyncIterator[Engine]:
    """`cache_path`: a SQLite file or a postgresql:// URL shared with other processes (see `cache_location`).

    `take_turns`: local llama-servers (embedded or `backend start`) decode one at a time; off, they decode at once."""
    speculation = speculation or SpeculationSettings()
    async with contextlib.AsyncExitStack() as stack:
        cache = await open_cache(cache_location(cache_path)) if use_cache else None
        if cache is not None:
            stack.push_async_callback(cache.aclose)
        backends: dict[str, Backend] = {}
        default: Backend | None = None
        if pools is not None:
            prices = pools.prices(prices)
            for name, pool in pools.build().items():
                backends[name] = await stack.enter_async_context(pool)
        if backend_url:
            default = await stack.enter_async_context(OpenAICompatBackend(backend_url, api_key=api_key))
        else:
            local: dict[str, Backend] = {}
            for ref in dict.fromkeys(m for m in models if m not in backends):
                label = model_label(ref)
                state = find_running(label)
                if state is not None:
                    # a `backend start` server may have other clients, whose calls our Slots do not see; llama-server
                    # starts an n-choice call only when n slots are free at once, so a wide call would starve
                    # behind their narrow ones: one choice per call here (same samples, prompt evaluated per slot)
                    backend = llama_server_backend(state.base_url, state.slots, max_n_per_call=1)
                else:
                    server = await stack.enter_async_context(
                        LlamaServer(ref, slots=slots, speculation=speculation.for_model(ref))
                    )
                    backend = server.backend()
                local[label] = await stack.enter_async_context(backend)
            if take_turns and len(local) > 1:
                turns = Turns()
                local = {label: TakesTurns(backend, turns, label) for label, backend in local.items()}
            for ref in dict.fromkeys(m for m in models if m not in backends):
                backends.setdefault(ref, local[model_label(ref)])
            backends.update(local)
        engine = Engine(backends, default_backend=default, cache=cache, prices=prices)
        stack.push_async_callback(engine.aclose)  # the run's sandbox and SQL verifier, if it made them
        yield engine
