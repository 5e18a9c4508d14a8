"""Unit tests of the response-cache choice and of the engine's cross-process lead (no database server needed)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest
from blocked_imports import block_import

from thinktank._postgres import is_postgres_url, redact
from thinktank.backends.scripted import ScriptedBackend
from thinktank.engine import Engine, ResponseCache
from thinktank.engine.cache import CachedSample, Lead, SampleCache, cache_key, sample_of, sample_row
from thinktank.engine.pg_cache import lock_id
from thinktank.exceptions import CacheError
from thinktank.runtime import CACHE_URL_ENV, cache_location, default_cache_path, open_cache
from thinktank.types import GenerationRequest


def test_redact_masks_the_password_only():
    assert redact("postgresql://tt:s3cret@db:5432/cache") == "postgresql://tt:***@db:5432/cache"
    assert redact("postgresql://tt@db/cache") == "postgresql://tt@db/cache"
    assert redact("postgres://:pw@db/cache") == "postgres://:***@db/cache"


def test_postgres_urls_are_told_from_paths():
    assert is_postgres_url("postgresql://h/db") and is_postgres_url("postgres://h/db")
    assert not is_postgres_url("/home/u/responses.sqlite") and not is_postgres_url("postgresql.sqlite")


def test_cache_location_prefers_the_flag_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_URL_ENV, raising=False)
    assert cache_location() == default_cache_path()
    assert cache_location(str(tmp_path / "c.sqlite")) == tmp_path / "c.sqlite"
    monkeypatch.setenv(CACHE_URL_ENV, "postgresql://tt@db/cache")
    assert cache_location() == "postgresql://tt@db/cache"
    assert cache_location(str(tmp_path / "c.sqlite")) == tmp_path / "c.sqlite"  # the flag wins
    monkeypatch.setenv(CACHE_URL_ENV, str(tmp_path / "env.sqlite"))
    assert cache_location() == tmp_path / "env.sqlite"


def test_lock_id_is_a_signed_64_bit_prefix_of_the_key():
    key = cache_key(GenerationRequest.from_prompt("p", "m"), 0)
    assert -(1 << 63) <= lock_id(key) < 1 << 63
    assert lock_id("f" * 64) == -1 and lock_id("0" * 64) == 0 and lock_id("7fffffffffffffff" + "0" * 48) == (1 << 63) - 1


async def test_a_path_opens_the_sqlite_cache(tmp_path):
    cache = await open_cache(tmp_path / "c.sqlite")
    assert isinstance(cache, ResponseCache)
    await cache.store("m", {"k": CachedSample("t", "stop", 1, 2, 0.5)})
    assert await cache.lookup(["k", "missing"]) == {"k": CachedSample("t", "stop", 1, 2, 0.5)}
    assert await cache.count() == 1 and await cache.purge() == 1 and await cache.count() == 0
    await cache.aclose()


async def test_an_unreachable_server_is_a_clear_error_naming_the_url_quickly():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://tt:hunter2@127.0.0.1:{port}/cache"
    started = time.monotonic()
    with pytest.raises(CacheError) as info:
        await open_cache(url)
    message = str(info.value)
    assert f"postgresql://tt:***@127.0.0.1:{port}/cache is unreachable" in message
    assert "hunter2" not in message and "re-run resumes" in message
    assert time.monotonic() - started < 10


async def test_without_psycopg_a_url_says_which_extra_to_install(monkeypatch):
    block_import(monkeypatch, "psycopg")
    with pytest.raises(CacheError, match=r"thinktank\[postgres\]"):
        await open_cache("postgresql://tt@127.0.0.1:1/cache")


class SharedDouble(SampleCache):
    """A cache whose `lead` reports that another process finished some keys while this one waited for them."""

    def __init__(self, finished_elsewhere: Mapping[str, CachedSample]) -> None:
        self.location = "double"
        self.rows: dict[str, CachedSample] = {}
        self.elsewhere = dict(finished_elsewhere)
        self.leads: list[list[str]] = []
        self.stored_in_lead: list[str] = []

    async def lookup(self, keys: Sequence[str]) -> dict[str, CachedSample]:
        return {k: self.rows[k] for k in keys if k in self.rows}

    async def store(self, model: str, samples: Mapping[str, CachedSample]) -> None:
        self.rows.update(samples)

    @contextlib.asynccontextmanager
    async def lead(self, keys: Sequence[str]) -> AsyncIterator[Lead]:
        self.leads.append(list(keys))
        self.rows.update({k: v for k, v in self.elsewhere.items() if k in keys})

        async def store(model: str, samples: Mapping[str, CachedSample]) -> None:
            self.stored_in_lead += list(samples)
            self.rows.update(samples)

        yield Lead({k: v for k, v in self.elsewhere.items() if k in keys}, store, waited=True)

    async def count(self) -> int:
        return len(self.rows)

    async def purge(self) -> int:
        n, self.rows = len(self.rows), {}
        return n

    async def aclose(self) -> None:
        pass


async def test_the_engine_calls_only_what_no_other_process_finished_while_it_waited():
    request = GenerationRequest.from_prompt("p", "m", n=3, seed=7)
    keys = [cache_key(request, i) for i in range(3)]
    elsewhere = {keys[1]: CachedSample("from another process", "stop", 4, 5, 0.25)}
    cache = SharedDouble(elsewhere)
    backend = ScriptedBackend(lambda r, i: f"seed {r.seed}")
    engine = Engine({"m": backend}, cache=cache)
    ctx = engine.context()
    out = await ctx.generate(request)
    assert cache.leads == [keys]
    assert [c.text for c in out] == ["seed 7", "from another process", "seed 9"]
    assert [c.cached for c in out] == [False, True, False]
    assert len(backend.requests) == 2 and [r.seed for r in backend.requests] == [7, 9]
    assert sorted(cache.stored_in_lead) == sorted([keys[0], keys[2]])  # written inside the lead, for its waiters
    assert ctx.usage.calls == 2 and ctx.usage.cache_hits == 1 and ctx.usage.saved_tokens == 9
    again = await engine.context().generate(request)  # now plain hits: no lead at all
    assert all(c.cached for c in again) and len(cache.leads) == 1


async def test_a_failed_call_writes_nothing_in_the_lead():
    def fail(request, i):
        raise RuntimeError("backend broke")

    cache = SharedDouble({})
    engine = Engine({"m": ScriptedBackend(fail)}, cache=cache)
    with pytest.raises(RuntimeError, match="backend broke"):
        await engine.context().generate(GenerationRequest.from_prompt("p", "m", n=2))
    assert cache.stored_in_lead == [] and cache.rows == {} and engine._in_flight == {}


async def test_sqlite_cache_keeps_single_process_behaviour(tmp_path: Path):
    """The SQLite cache's lead waits for nobody: what it finds is what the first lookup found."""
    cache = ResponseCache(tmp_path / "c.sqlite")
    async with cache.lead(["a", "b"]) as lead:
        assert lead.found == {} and not lead.waited
        await lead.store("m", {"a": CachedSample("t", "stop", 1, 1, 0.0)})
    assert list((await cache.lookup(["a", "b"])).keys()) == ["a"]
    cache.close()


def test_the_cli_names_a_shared_cache_that_is_down_and_exits_2(tmp_path):
    import os
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://tt@127.0.0.1:{port}/cache"
    env = {**os.environ, "THINKTANK_CACHE": str(tmp_path), "COLUMNS": "300"}
    done = subprocess.run([sys.executable, "-m", "thinktank.cli", "cache", "clear", "--cache", url],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"shared response cache {url} is unreachable" in " ".join((done.stdout + done.stderr).split())


def test_both_backends_build_the_one_row_layout_as_they_wrote_it_by_hand():
    """The shared row layer (`responses_table`, `sample_row`, `sample_of`) gives each backend the SQL it had."""
    from thinktank.engine import cache as sqlite_cache
    from thinktank.engine import pg_cache

    def words(sql: str) -> str:
        return " ".join(sql.replace("(", " ( ").replace(")", " ) ").replace(",", " , ").split())

    columns = ("key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL, finish_reason TEXT NOT NULL,"
               " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost_usd {real} NOT NULL,"
               " created_at {created_at})")  # fmt: skip
    assert words(sqlite_cache._SCHEMA) == words(
        "CREATE TABLE IF NOT EXISTS responses (" + columns.format(real="REAL", created_at="REAL NOT NULL")
    )
    assert words(pg_cache._DDL[0]) == words(
        "CREATE TABLE thinktank_responses ("
        + columns.format(real="DOUBLE PRECISION", created_at="TIMESTAMPTZ NOT NULL DEFAULT now()")
    )
    assert words(pg_cache._UPSERT) == words(
        "INSERT INTO thinktank_responses (key, model, text, finish_reason, prompt_tokens, completion_tokens, cost_usd)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET model = EXCLUDED.model,"
        " text = EXCLUDED.text, finish_reason = EXCLUDED.finish_reason, prompt_tokens = EXCLUDED.prompt_tokens,"
        " completion_tokens = EXCLUDED.completion_tokens, cost_usd = EXCLUDED.cost_usd, created_at = now()"
    )
    sample = CachedSample("ü", "stop", 3, 4, 0.5)
    assert sample_of(sample_row("k", "m", sample)[2:]) == sample
    assert sample_of(("t", "length", 1, 2, 0)) == CachedSample("t", "length", 1, 2, 0.0)  # an int cost reads as float
    assert isinstance(sample_of(("t", "length", 1, 2, 0)).cost_usd, float)


def test_a_cache_file_written_before_the_shared_row_layer_is_read_and_written_as_before(tmp_path: Path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL, finish_reason TEXT NOT"
        " NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, created_at"
        " REAL NOT NULL); PRAGMA user_version=1;"
    )
    db.execute("INSERT INTO responses VALUES ('old', 'm', 'kept', 'stop', 1, 2, 0.25, 1.0)")  # the old positional write
    db.commit()
    db.close()
    cache = ResponseCache(path)
    assert cache.get("old") == CachedSample("kept", "stop", 1, 2, 0.25)
    cache.put("new", "m", CachedSample("written", "length", 3, 4, 0.0))
    cache.put("old", "m", CachedSample("replaced", "stop", 5, 6, 0.5))
    assert cache.get("new") == CachedSample("written", "length", 3, 4, 0.0) and len(cache) == 2
    assert cache.get("old") == CachedSample("replaced", "stop", 5, 6, 0.5)
    cache.close()
