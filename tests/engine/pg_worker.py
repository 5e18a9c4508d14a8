"""One process of the cross-process single-flight tests: asks a shared PostgreSQL cache for the same samples.

    python tests/engine/pg_worker.py URL CALLS_FILE OUT_FILE --n 2 --waiters 3 [--hang]

The backend double appends a line to CALLS_FILE per call (O_APPEND: several processes write one file safely).
With --waiters K it then holds its answer until K other connections wait on the advisory lock of the request's
first key (read from pg_locks, polled with a deadline), so the processes provably overlap; with --hang it never
answers (the test kills this process mid-call). OUT_FILE gets the texts and which samples were cache hits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import psycopg

from thinktank.backends.scripted import ScriptedBackend
from thinktank.engine import Engine
from thinktank.engine.cache import cache_key
from thinktank.engine.pg_cache import PostgresCache, lock_id
from thinktank.types import GenerationRequest

PROMPT = "the same uncached question"


def request(n: int) -> GenerationRequest:
    return GenerationRequest.from_prompt(PROMPT, "m", n=n, seed=11, temperature=0.7)


async def waiting_on(url: str, lock: int) -> int:
    """How many connections wait for advisory lock `lock` (a bigint lock is classid = high, objid = low 32 bits)."""
    unsigned = lock & ((1 << 64) - 1)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid = %s AND objid = %s AND objsubid = 1",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("calls")
    parser.add_argument("out")
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--waiters", type=int, default=0)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    req = request(args.n)
    first_lock = min(lock_id(cache_key(req, i)) for i in range(args.n))

    async def reply(r: GenerationRequest, i: int) -> str:
        def record(line: str) -> None:
            fd = os.open(args.calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, f"{os.getpid()} seed={r.seed} {line}\n".encode())
            os.close(fd)

        if args.hang:
            record("hangs")
            await asyncio.Event().wait()
        deadline = time.monotonic() + 20
        while (waiting := await waiting_on(args.url, first_lock)) < args.waiters and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        record(f"waiters={waiting}")
        return f"answer for seed {r.seed}"

    cache = await PostgresCache.open(args.url)
    try:
        engine = Engine({"m": ScriptedBackend(reply)}, cache=cache)
        out = await engine.context().generate(req)
    finally:
        await cache.aclose()
    with open(args.out, "w") as f:
        json.dump({"texts": [c.text for c in out], "cached": [c.cached for c in out]}, f)


if __name__ == "__main__":
    asyncio.run(main())
