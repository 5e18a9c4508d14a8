"""The shared response cache against a real PostgreSQL server (Debian's package, started by tests/postgres_server.py).

Single flight across processes is checked with subprocesses (tests/engine/pg_worker.py) and a backend double that
records each call in a file; the fault tests stop the server mid-use and start it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from postgres_server import PostgresServer

from thinktank.arch import load_architecture
from thinktank.backends.scripted import ScriptedBackend
from thinktank.engine import Engine
from thinktank.engine.cache import CachedSample, cache_key
from thinktank.engine.pg_cache import SCHEMA_VERSION, PostgresCache, lock_id
from thinktank.eval.runner import run_eval
from thinktank.eval.store import RunStore
from thinktank.exceptions import CacheError
from thinktank.runtime import open_cache
from thinktank.tasks.base import HiddenChecks, Problem, TaskInput
from thinktank.types import GenerationRequest

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("pg_worker.py")


def seeded(r: GenerationRequest, i: int) -> str:
    return f"seed {r.seed}"


async def test_samples_round_trip_and_replace(postgres_url):
    cache = await PostgresCache.open(postgres_url)
    try:
        assert await cache.lookup(["a"]) == {} and await cache.count() == 0
        await cache.store("m", {"a": CachedSample("x", "stop", 1, 2, 0.5), "b": CachedSample("ü ✓", "length", 3, 4, 0.0)})
        await cache.store("m", {"a": CachedSample("y", "stop", 5, 6, 0.25)})  # UPSERT: the newer sample wins
        assert await cache.lookup(["a", "b", "c"]) == {
            "a": CachedSample("y", "stop", 5, 6, 0.25),
            "b": CachedSample("ü ✓", "length", 3, 4, 0.0),
        }
        other = await open_cache(postgres_url)  # another client (process, machine) sees the same rows
        assert await other.count() == 2
        assert await other.purge() == 2 and await cache.count() == 0
        await other.aclose()
    finally:
        await cache.aclose()


async def test_concurrent_first_opens_create_the_schema_once(postgres_url):
    caches = await asyncio.gather(*(PostgresCache.open(postgres_url) for _ in range(6)))
    for cache in caches:
        await cache.aclose()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT component, version FROM thinktank_schema").fetchall() == [("response_cache", SCHEMA_VERSION)]


async def test_a_cache_of_another_schema_version_is_refused(postgres_url):
    await (await PostgresCache.open(postgres_url)).aclose()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE thinktank_schema SET version = 99 WHERE component = 'response_cache'")
    with pytest.raises(CacheError) as info:
        await PostgresCache.open(postgres_url)
    assert f"{postgres_url} has schema version 99" in str(info.value)
    assert f"this thinktank uses {SCHEMA_VERSION}" in str(info.value)


async def test_engines_share_samples_through_the_server(postgres_url):
    request = GenerationRequest.from_prompt("p", "m", n=4, seed=3, temperature=0.8)
    first_backend, second_backend = ScriptedBackend(seeded), ScriptedBackend(seeded)
    first = await PostgresCache.open(postgres_url)
    second = await PostgresCache.open(postgres_url)  # as a second replica would
    try:
        made = await Engine({"m": first_backend}, cache=first).context().generate(request.with_(n=2))
        ctx = Engine({"m": second_backend}, cache=second).context()
        got = await ctx.generate(request)
        assert [c.text for c in got] == ["seed 3", "seed 4", "seed 5", "seed 6"]
        assert [c.cached for c in got] == [True, True, False, False] and not any(c.cached for c in made)
        assert len(first_backend.requests) == 2 and len(second_backend.requests) == 2
        assert ctx.usage.cache_hits == 2 and await first.count() == 4
    finally:
        await first.aclose()
        await second.aclose()


async def test_concurrent_identical_misses_in_one_engine_hold_one_lead(postgres_url):
    backend = ScriptedBackend(seeded, delay_s=0.05)
    cache = await PostgresCache.open(postgres_url)
    try:
        engine = Engine({"m": backend}, cache=cache)
        request = GenerationRequest.from_prompt("p", "m", n=2, seed=0)
        results = await asyncio.gather(*(engine.context().generate(request) for _ in range(5)))
        assert len(backend.requests) == 2 and all([c.text for c in r] == ["seed 0", "seed 1"] for r in results)
    finally:
        await cache.aclose()


def spawn(url: str, calls: Path, out: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.Popen([sys.executable, str(WORKER), url, str(calls), str(out), *args], env=env, cwd=ROOT)


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def lock_waiters(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.timeout(120)
def test_processes_asking_the_same_uncached_samples_make_one_backend_call_each(postgres_url, tmp_path):
    """4 processes ask for the same 2 uncached samples at once: 2 backend calls in all, one process makes them."""
    processes, n = 4, 2
    asyncio.run(_open_and_close(postgres_url))  # the schema exists before the race, as on a running deployment
    calls = tmp_path / "calls.txt"
    outs = [tmp_path / f"out{k}.json" for k in range(processes)]
    workers = [spawn(postgres_url, calls, out, "--n", str(n), "--waiters", str(processes - 1)) for out in outs]
    for worker in workers:
        assert worker.wait(timeout=90) == 0
    lines = calls.read_text().splitlines()
    assert len(lines) == n, lines  # without cross-process single flight: processes * n
    assert len({line.split()[0] for line in lines}) == 1  # all made by one process ...
    assert lines[0].endswith(f"waiters={processes - 1}")  # ... while the other three waited for it
    results = [json.loads(out.read_text()) for out in outs]
    assert all(r["texts"] == ["answer for seed 11", "answer for seed 12"] for r in results)
    assert sorted(r["cached"] for r in results) == [[False, False]] + [[True, True]] * (processes - 1)


@pytest.mark.timeout(120)
def test_a_waiter_computes_the_sample_itself_when_the_leader_dies(postgres_url, tmp_path):
    asyncio.run(_open_and_close(postgres_url))
    calls = tmp_path / "calls.txt"
    leader = spawn(postgres_url, calls, tmp_path / "leader.json", "--hang")
    try:
        wait_until(lambda: calls.exists() and len(calls.read_text().splitlines()) == 1, "the leader's backend call")
        waiter = spawn(postgres_url, calls, tmp_path / "waiter.json")
        wait_until(lambda: lock_waiters(postgres_url) == 1, "the second process to wait on the leader's lock")
        assert waiter.poll() is None
        leader.send_signal(signal.SIGKILL)
        assert waiter.wait(timeout=60) == 0
    finally:
        leader.kill()
        leader.wait()
    lines = calls.read_text().splitlines()
    assert len(lines) == 2 and lines[0].split()[0] != lines[1].split()[0]
    assert json.loads((tmp_path / "waiter.json").read_text()) == {"texts": ["answer for seed 11"], "cached": [False]}
    assert not (tmp_path / "leader.json").exists()


async def _open_and_close(url: str) -> None:
    await (await PostgresCache.open(url)).aclose()


@pytest.fixture
def own_server():
    """A server of the test's own, which it may stop and start."""
    with PostgresServer() as server:
        yield server


async def test_a_stopped_server_is_a_clear_error_nothing_is_lost_and_a_rerun_resumes(own_server):
    url = own_server.create_database("cache")
    kept, lost = (GenerationRequest.from_prompt(p, "m", seed=1) for p in ("kept", "lost"))
    backend = ScriptedBackend(seeded)
    cache = await PostgresCache.open(url)
    engine = Engine({"m": backend}, cache=cache)
    await engine.context().generate(kept)
    await asyncio.to_thread(own_server.stop, "immediate")  # like a crash of the database server
    started = time.monotonic()
    with pytest.raises(CacheError) as info:
        await engine.context().generate(lost)
    assert f"shared response cache {url} is unreachable" in str(info.value)
    assert time.monotonic() - started < 10 and len(backend.requests) == 1  # no backend call behind a dead cache
    with pytest.raises(CacheError, match="is unreachable"):
        await PostgresCache.open(url)

    await asyncio.to_thread(own_server.start)
    # the same client recovers (its stale connections were dropped at the first failure)
    assert await cache.lookup([cache_key(kept, 0)]) == {cache_key(kept, 0): CachedSample("seed 1", "stop", 1, 2, 0.0)}
    out = await engine.context().generate(kept)
    assert out[0].cached and len(backend.requests) == 1
    out = await engine.context().generate(lost)
    assert not out[0].cached and len(backend.requests) == 2 and await cache.count() == 2
    await cache.aclose()


async def test_a_server_stopped_during_a_call_keeps_no_half_written_sample(own_server):
    url = own_server.create_database("cache")
    cache = await PostgresCache.open(url)

    async def stop_then_answer(r: GenerationRequest, i: int) -> str:
        await asyncio.to_thread(own_server.stop, "fast")  # the cache goes down while the backend works
        return "answer"

    request = GenerationRequest.from_prompt("p", "m", n=2, seed=0)
    with pytest.raises(CacheError, match=f"{url} is unreachable"):
        await Engine({"m": ScriptedBackend(stop_then_answer)}, cache=cache).context().generate(request)
    await asyncio.to_thread(own_server.start)
    assert await cache.count() == 0  # the lead's transaction never committed: no sample, no lock left behind
    backend = ScriptedBackend(seeded)
    out = await Engine({"m": backend}, cache=cache).context().generate(request)
    assert [c.text for c in out] == ["seed 0", "seed 1"] and await cache.count() == 2
    await cache.aclose()


def adder(request: GenerationRequest, index: int) -> str:
    i = int(request.messages[-1]["content"].split()[2])
    return f"#### {2 * i}"


async def test_an_eval_whose_cache_goes_down_stops_clearly_and_resumes_with_the_missing_problems(own_server, tmp_path):
    url = own_server.create_database("cache")
    problems = [
        Problem(TaskInput(f"q{i}", "math", f"What is {i} + {i}? End with #### <number>."), HiddenChecks(answer=str(2 * i)))
        for i in range(6)
    ]
    arch = load_architecture("single", ["m"])
    calls = 0

    async def stops_at_the_fourth_call(r: GenerationRequest, i: int) -> str:
        nonlocal calls
        calls += 1
        if calls == 4:
            await asyncio.to_thread(own_server.stop, "immediate")
        return adder(r, i)

    store = RunStore(tmp_path / "run")
    store.bind_config({"task": "adder", "arch": "single", "models": ["m"]})
    cache = await PostgresCache.open(url)
    with pytest.raises(CacheError, match="is unreachable"):
        await run_eval(Engine({"m": ScriptedBackend(stops_at_the_fourth_call)}, cache=cache), arch, problems, store,
                       concurrency=1)  # fmt: skip
    await cache.aclose()
    assert len(store.done_ids()) == 3  # the problems before the failure are committed, the failing one is not

    await asyncio.to_thread(own_server.start)
    backend = ScriptedBackend(adder)
    cache = await PostgresCache.open(url)
    progress = await run_eval(Engine({"m": backend}, cache=cache), arch, problems, RunStore(tmp_path / "run"))
    assert progress.done == 3 and progress.passed == 3 and len(RunStore(tmp_path / "run").done_ids()) == 6
    assert len(backend.requests) == 3 and await cache.count() == 6
    await cache.aclose()


def test_cli_cache_clear_empties_a_shared_cache(postgres_url):
    from typer.testing import CliRunner

    from thinktank.cli import app

    async def fill() -> None:
        cache = await PostgresCache.open(postgres_url)
        await cache.store("m", {"k": CachedSample("t", "stop", 1, 1, 0.0)})
        await cache.aclose()

    asyncio.run(fill())
    result = CliRunner().invoke(app, ["cache", "clear", "--cache", postgres_url])
    assert result.exit_code == 0, result.output
    assert f"removed 1 cached responses from {postgres_url}" in " ".join(result.output.split())


def test_lock_ids_of_real_keys_are_what_the_server_reports(postgres_url):
    """The worker's pg_locks query decodes a bigint advisory lock as (classid, objid); check that against the server."""
    key = cache_key(GenerationRequest.from_prompt("p", "m"), 0)
    lock = lock_id(key)
    unsigned = lock & ((1 << 64) - 1)
    with psycopg.connect(postgres_url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        row = conn.execute("SELECT classid::bigint, objid::bigint, objsubid FROM pg_locks WHERE locktype = 'advisory'").fetchone()
    assert row == (unsigned >> 32, unsigned & 0xFFFFFFFF, 1)


async def test_a_cancelled_waiter_stops_waiting_on_the_server_and_the_cache_still_works(postgres_url):
    """A served request that times out while another process computes its sample: nothing keeps waiting."""
    request = GenerationRequest.from_prompt("p", "m", seed=0)
    cache = await PostgresCache.open(postgres_url)
    backend = ScriptedBackend(seeded)
    engine = Engine({"m": backend}, cache=cache)
    try:
        with psycopg.connect(postgres_url) as holder:  # another process's lead holds the key's lock
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id(cache_key(request, 0)),))
            task = asyncio.create_task(engine.context().generate(request))
            deadline = time.monotonic() + 20
            while await asyncio.to_thread(lock_waiters, postgres_url) < 1:
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            deadline = time.monotonic() + 10
            while await asyncio.to_thread(lock_waiters, postgres_url) > 0:
                assert time.monotonic() < deadline, "the cancelled lock wait is still on the server"
                await asyncio.sleep(0.02)
            assert backend.requests == [] and engine._in_flight == {}
        out = await engine.context().generate(request)  # the holder is gone: this process computes it
        assert [c.text for c in out] == ["seed 0"] and len(backend.requests) == 1
    finally:
        await cache.aclose()
