"""Issue 15, 5(c): single flight across processes through the shared PostgreSQL cache, and what a lookup costs.

    .venv/bin/python benchmarks/bench_single_flight.py --processes 8 --rounds 3 --latency 0.5 --lookups 2000
    .venv/bin/python benchmarks/bench_single_flight.py --url postgresql://user@host/db   # an existing server

1. `--rounds` times: `--processes` processes ask the same uncached sample (a new prompt each round) of a backend
   double that takes `--latency` s and appends a line to a file per call. The processes are released together:
   each cache open takes the schema's advisory lock, which this script holds until all of them wait on it. Once
   with the PostgreSQL cache, once with one SQLite file shared by the same processes (single flight only inside a
   process), for contrast: backend calls per round, and the round's wall time.
2. Per-lookup latency, one process, sequential: `--lookups` hits and misses of `cache.lookup([key])`, and
   `Engine.generate` served from the cache, on PostgreSQL (loopback TCP) vs SQLite (WAL file), mean and p99 in µs.

Without --url it starts a throwaway server from Debian's postgresql package (tests/postgres_server.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from thinktank._postgres import SCHEMA_LOCK  # noqa: E402
from thinktank.backends.scripted import ScriptedBackend  # noqa: E402
from thinktank.engine import Engine  # noqa: E402
from thinktank.engine.cache import CachedSample, SampleCache  # noqa: E402
from thinktank.runtime import open_cache  # noqa: E402
from thinktank.types import GenerationRequest  # noqa: E402


async def worker(location: str, calls: str, prompt: str, latency: float) -> None:
    async def reply(r: GenerationRequest, i: int) -> str:
        fd = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        await asyncio.sleep(latency)  # the simulated generation
        return "answer"

    cache = await open_cache(location if location.startswith("postgres") else Path(location))
    try:
        await (
            Engine({"m": ScriptedBackend(reply)}, cache=cache)
            .context()
            .generate(GenerationRequest.from_prompt(prompt, "m", seed=0))
        )
    finally:
        await cache.aclose()


def waiting_on_schema_lock(conn) -> int:
    unsigned = SCHEMA_LOCK & ((1 << 64) - 1)
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s AND objid = %s",
        (unsigned >> 32, unsigned & 0xFFFFFFFF),
    ).fetchone()
    return int(row[0])


def gated(url: str, argv: list[str], processes: int, ready: Callable[[Any], bool]) -> float:
    """Start `processes` copies of `argv` behind the gate (the schema lock, held here) and release them together once
    `ready(gate)`; the wall seconds from the release until every one has exited."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        procs = [subprocess.Popen(argv) for _ in range(processes)]
        deadline = time.monotonic() + 120
        while not ready(gate):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("workers did not reach the gate")
            time.sleep(0.02)
        released = time.monotonic()
        gate.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
        for p in procs:
            if p.wait(timeout=120) != 0:
                raise RuntimeError("a worker failed")
    return time.monotonic() - released


def one_round(url: str, location: str, processes: int, latency: float, prompt: str, work: Path) -> tuple[int, float]:
    """Backend calls and wall seconds (from the release) of `processes` processes asking `prompt` at once."""
    calls = work / f"calls-{time.monotonic_ns()}.txt"
    argv = [sys.executable, __file__, "--worker", location, str(calls), prompt, str(latency)]
    wall = gated(url, argv, processes, lambda gate: waiting_on_schema_lock(gate) >= processes)
    return len(calls.read_text().splitlines()) if calls.exists() else 0, wall


def _all_ready(work: Path, processes: int) -> bool:
    return len(list(work.glob("ready-*"))) >= processes


async def sqlite_gated_worker(location: str, calls: str, prompt: str, latency: float, url: str, work: str) -> None:
    """The SQLite contrast: the same gate (the PostgreSQL schema lock), taken by the worker itself."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        Path(work, f"ready-{os.getpid()}").touch()
        await conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        await conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
    await worker(location, calls, prompt, latency)


def sqlite_round(url: str, db: Path, processes: int, latency: float, prompt: str, work: Path) -> tuple[int, float]:
    for ready in work.glob("ready-*"):
        ready.unlink()
    calls = work / f"calls-{time.monotonic_ns()}.txt"
    argv = [sys.executable, __file__, "--sqlite-worker", str(db), str(calls), prompt, str(latency), url, str(work)]
    wall = gated(url, argv, processes, lambda gate: _all_ready(work, processes) and waiting_on_schema_lock(gate) >= processes)
    return len(calls.read_text().splitlines()), wall


async def lookup_latency(cache: SampleCache, lookups: int) -> dict[str, tuple[float, float]]:
    """µs (mean, p99) of a hit, a miss, and an engine call served from the cache."""
    await cache.store("m", {f"hit-{i}": CachedSample("answer " * 20, "stop", 30, 20, 0.0) for i in range(lookups)})
    request = GenerationRequest.from_prompt("served from cache", "m", seed=0)
    engine = Engine({"m": ScriptedBackend(lambda r, i: "answer")}, cache=cache)
    await engine.context().generate(request)  # now cached
    out: dict[str, tuple[float, float]] = {}
    for name, step in (
        ("hit", lambda i: cache.lookup([f"hit-{i}"])),
        ("miss", lambda i: cache.lookup([f"miss-{i}"])),
        ("engine hit", lambda i: engine.context().generate(request)),
    ):
        times = []
        for i in range(lookups):
            started = time.perf_counter()
            await step(i)
            times.append((time.perf_counter() - started) * 1e6)
        times.sort()
        out[name] = (statistics.fmean(times), times[int(0.99 * (len(times) - 1))])
    return out


async def latencies(url: str, db: Path, lookups: int) -> dict[str, dict[str, tuple[float, float]]]:
    results = {}
    for name, location in (("postgresql", url), ("sqlite", db)):
        cache = await open_cache(location)
        try:
            results[name] = await lookup_latency(cache, lookups)
        finally:
            await cache.aclose()
    return results


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        location, calls, prompt, latency = sys.argv[2:6]
        asyncio.run(worker(location, calls, prompt, float(latency)))
        return
    if sys.argv[1:2] == ["--sqlite-worker"]:
        location, calls, prompt, latency, url, work = sys.argv[2:8]
        asyncio.run(sqlite_gated_worker(location, calls, prompt, float(latency), url, work))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", help="an existing PostgreSQL database (default: start a throwaway server)")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the backend double takes per call")
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args()

    server = None
    if args.url is None:
        from postgres_server import PostgresServer

        server = PostgresServer()
        server.start()
        url = server.create_database("bench")
    else:
        url = args.url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            db = work / "responses.sqlite"
            asyncio.run(_prepare(url, db))
            tag = f"{time.time_ns()}"
            print(f"## {args.processes} processes ask the same uncached sample (backend latency {args.latency} s)\n")
            print("| cache | round | backend calls | wall s |\n|---|---|---|---|")
            for k in range(args.rounds):
                calls, wall = one_round(url, url, args.processes, args.latency, f"pg {tag} {k}", work)
                print(f"| postgresql | {k + 1} | {calls} | {wall:.2f} |", flush=True)
            for k in range(args.rounds):
                calls, wall = sqlite_round(url, db, args.processes, args.latency, f"sqlite {tag} {k}", work)
                print(f"| sqlite file shared by the processes | {k + 1} | {calls} | {wall:.2f} |", flush=True)
            print(f"\n## Per-lookup latency, one process, {args.lookups} sequential lookups (µs)\n")
            print("| cache | hit mean | hit p99 | miss mean | miss p99 | engine hit mean | engine hit p99 |")
            print("|---|---|---|---|---|---|---|")
            for name, row in asyncio.run(latencies(url, work / "latency.sqlite", args.lookups)).items():
                cells = " | ".join(f"{row[k][0]:.0f} | {row[k][1]:.0f}" for k in ("hit", "miss", "engine hit"))
                print(f"| {name} | {cells} |")
            print(json.dumps({"processes": args.processes, "rounds": args.rounds, "latency_s": args.latency}))
    finally:
        if server is not None:
            server.close()


async def _prepare(url: str, db: Path) -> None:
    """Create both caches' schemas before the rounds, as on a running deployment."""
    for location in (url, db):
        await (await open_cache(location)).aclose()


if __name__ == "__main__":
    main()
