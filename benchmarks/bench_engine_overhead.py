"""What `Engine.generate` adds to each LLM call, at high concurrency (issue #2, item 9a).

Target: under 1 ms per call. Two measurements, each against its own baseline in the same run:

(i)  in-process: an instant ScriptedBackend called alone vs through the Engine (no cache,
     SQLite cache all misses, SQLite cache all hits);
(ii) loopback HTTP: the fake OpenAI server (tests/fake_openai_server.py, in its own process)
     answering at once, called with a bare httpx.AsyncClient vs OpenAICompatBackend alone vs
     Engine + OpenAICompatBackend.

Every row runs `calls` requests with `concurrency` in flight; the best of `--repeat` runs counts.

    .venv/bin/python benchmarks/bench_engine_overhead.py --calls 20000 --http-calls 2000 --concurrency 256
    .venv/bin/python benchmarks/bench_engine_overhead.py --profile   # cProfile of the Engine path
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx

from thinktank.backends import OpenAICompatBackend, ScriptedBackend
from thinktank.engine import Engine, ResponseCache
from thinktank.types import GenerationRequest

TARGET_US = 1000.0
Call = Callable[[int], Awaitable[object]]


async def run_concurrently(call: Call, calls: int, concurrency: int) -> float:
    """Wall seconds for `calls` calls with `concurrency` workers pulling from one counter."""
    counter = itertools.count()

    async def worker() -> None:
        while (i := next(counter)) < calls:
            await call(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def best_of(make_call: Callable[[], Call], calls: int, concurrency: int, repeat: int) -> float:
    """Best wall time over `repeat` runs, each with a fresh call (fresh engine / cache state)."""
    return min([await run_concurrently(make_call(), calls, concurrency) for _ in range(repeat)])


def requests(calls: int) -> list[GenerationRequest]:
    return [GenerationRequest.from_prompt(f"question number {i}", "m", max_tokens=16) for i in range(calls)]


def engine_call(engine: Engine, reqs: list[GenerationRequest]) -> Call:
    async def call(i: int) -> object:
        return await engine.context().generate(reqs[i])

    return call


async def in_process_rows(calls: int, concurrency: int, repeat: int, tmp: Path) -> list[tuple[str, float]]:
    reqs = requests(calls)
    backend = ScriptedBackend(lambda request, index: "42", max_concurrency=concurrency)
    rows = [("in-process backend alone", await best_of(lambda: lambda i: backend.generate(reqs[i]), calls, concurrency, repeat))]
    rows.append(
        ("Engine, no cache", await best_of(lambda: engine_call(Engine({"m": backend}), reqs), calls, concurrency, repeat))
    )

    caches = itertools.count()

    def fresh_cache_engine() -> Call:
        return engine_call(Engine({"m": backend}, cache=ResponseCache(tmp / f"miss{next(caches)}.db")), reqs)

    rows.append(("Engine, SQLite cache (all misses)", await best_of(fresh_cache_engine, calls, concurrency, repeat)))
    warm = Engine({"m": backend}, cache=ResponseCache(tmp / "warm.db"))
    await run_concurrently(engine_call(warm, reqs), calls, concurrency)
    rows.append(("Engine, SQLite cache (all hits)", await best_of(lambda: engine_call(warm, reqs), calls, concurrency, repeat)))
    return rows


@contextlib.contextmanager
def server_process() -> Iterator[str]:
    """The fake server in its own process, so its CPU time and GIL are not the client's."""
    script = Path(__file__).resolve().parents[1] / "tests" / "fake_openai_server.py"
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            yield f"http://127.0.0.1:{int(proc.stdout.readline())}/v1"
        finally:
            proc.kill()


async def http_rows(calls: int, concurrency: int, repeat: int) -> list[tuple[str, float]]:
    reqs = requests(calls)
    pool = httpx.Limits(max_connections=max(2 * concurrency, 16), max_keepalive_connections=max(2 * concurrency, 16))
    with server_process() as url:
        async with (
            httpx.AsyncClient(base_url=url, limits=pool) as client,
            OpenAICompatBackend(url, max_concurrency=concurrency) as backend,
        ):

            async def bare(i: int) -> object:
                r = reqs[i]
                body = {"model": r.model, "messages": r.messages, "n": 1, "max_tokens": r.max_tokens}
                response = await client.post("/chat/completions", json=body)
                response.raise_for_status()
                return response.json()

            variants: list[tuple[str, Call]] = [
                ("bare httpx.AsyncClient -> loopback", bare),
                ("OpenAICompatBackend alone", lambda i: backend.generate(reqs[i])),
                ("Engine + OpenAICompatBackend", engine_call(Engine({"m": backend}), reqs)),
            ]
            for _, call in variants:
                await run_concurrently(call, concurrency, concurrency)  # open the pools' connections first
            best = [float("inf")] * len(variants)
            for _ in range(repeat):  # interleaved, so drift in machine load hits every variant alike
                for k, (_, call) in enumerate(variants):
                    best[k] = min(best[k], await run_concurrently(call, calls, concurrency))
    return [(label, wall) for (label, _), wall in zip(variants, best, strict=True)]


def print_table(title: str, rows: list[tuple[str, float]], calls: int) -> None:
    base_us = rows[0][1] / calls * 1e6
    print(f"\n{title}")
    print(f"{'path':<38} {'calls':>7} {'wall s':>8} {'us/call':>9} {'+us/call':>9} {'x base':>7}")
    for label, wall in rows:
        us = wall / calls * 1e6
        print(f"{label:<38} {calls:>7} {wall:>8.3f} {us:>9.1f} {us - base_us:>9.1f} {us / base_us:>7.2f}")


def profile_engine(calls: int, concurrency: int) -> None:
    reqs = requests(calls)
    engine = Engine({"m": ScriptedBackend(lambda request, index: "42", max_concurrency=concurrency)})
    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, run_concurrently(engine_call(engine, reqs), calls, concurrency))
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per in-process row")
    parser.add_argument("--http-calls", type=int, default=2000, help="calls per loopback HTTP row")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--http-concurrency", type=int, help="concurrency of the HTTP rows (default: --concurrency)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the best counts")
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process Engine path instead")
    args = parser.parse_args()
    if args.profile:
        profile_engine(args.calls, args.concurrency)
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(in_process_rows(args.calls, args.concurrency, args.repeat, Path(tmp)))
    print_table(f"(i) in-process, concurrency {args.concurrency}, best of {args.repeat}", rows, args.calls)
    http_concurrency = args.http_concurrency or args.concurrency
    http = asyncio.run(http_rows(args.http_calls, http_concurrency, args.repeat))
    print_table(f"(ii) loopback HTTP, concurrency {http_concurrency}, best of {args.repeat}", http, args.http_calls)
    worst = max(wall / args.calls * 1e6 for _, wall in rows[1:])
    added_http = (http[2][1] - http[0][1]) / args.http_calls * 1e6
    print(f"\nworst in-process Engine wall/call: {worst:.0f} us; Engine+client added over bare httpx: {added_http:.0f} us")
    print(f"target < {TARGET_US:.0f} us per call: {'met' if max(worst, added_http) < TARGET_US else 'NOT met'}")


if __name__ == "__main__":
    main()
