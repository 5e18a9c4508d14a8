"""Issue 15, 5(b): two llama-server replicas of one thread each behind a pool vs one replica with two threads.

    .venv/bin/python benchmarks/bench_pool_replicas.py --queries 16 --n 2 --max-tokens 128 --rounds 2

Same model, same seeded requests, all in flight at once through the engine: one server (`-t 2`, 2×slots slots)
against a `PoolBackend` over two servers pinned to one core each (`-t 1`, slots each), rounds alternating. Tokens
are the servers' own counters. The ratio is what counts; run on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time

from thinktank.backends.base import Backend
from thinktank.backends.llama_server import LlamaServer, server_metrics
from thinktank.backends.pool import PoolBackend, Replica
from thinktank.backends.speculation import Speculation
from thinktank.engine import Engine
from thinktank.types import GenerationRequest

PROMPT = "Write a Python function that parses a CSV line with quoted fields. Explain each step."


async def run_load(backend: Backend, model: str, args: argparse.Namespace, servers: list[LlamaServer]) -> float:
    """Completion tokens per second over the whole load, counted by the servers."""
    engine = Engine({model: backend})
    requests = [
        GenerationRequest.from_prompt(
            f"{PROMPT} (variant {q})", model, n=args.n, temperature=0.8, max_tokens=args.max_tokens, seed=100 * q
        )
        for q in range(args.queries)
    ]

    def predicted() -> float:
        return sum(server_metrics(s.base_url)["llamacpp:tokens_predicted_total"] for s in servers)

    before, started = predicted(), time.perf_counter()
    await asyncio.gather(*(engine.context(use_cache=False).generate(r) for r in requests))
    return (predicted() - before) / (time.perf_counter() - started)


async def one_server(model: str, args: argparse.Namespace) -> float:
    server = LlamaServer(model, slots=2 * args.slots, threads=2, speculation=Speculation())
    async with server, server.backend() as backend:
        return await run_load(backend, server.model, args, [server])


async def two_replicas(model: str, args: argparse.Namespace) -> float:
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(
                LlamaServer(model, slots=args.slots, threads=1, cpus=cpus, poll=0, speculation=Speculation())
            )
            for cpus in ("0-0", "1-1")
        ]
        replicas = [Replica(s.backend(), s.slots) for s in servers]
        pool = await stack.enter_async_context(PoolBackend(servers[0].model, replicas))
        return await run_load(pool, servers[0].model, args, servers)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--n", type=int, default=2, help="samples per query (one replica serves all of a query's)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--slots", type=int, default=4, help="slots per replica; the single server gets twice as many")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    seen: dict[str, list[float]] = {"one": [], "two": []}
    for round_ in range(args.rounds):
        seen["one"].append(await one_server(args.model, args))
        seen["two"].append(await two_replicas(args.model, args))
        print(f"round {round_ + 1}: one server {seen['one'][-1]:.1f} tok/s, two replicas {seen['two'][-1]:.1f} tok/s")
    one, two = statistics.median(seen["one"]), statistics.median(seen["two"])
    print(
        f"\n| setup | decode tok/s (median of {args.rounds}) |  ({args.model}, {args.queries} queries x n={args.n},"
        f" {args.max_tokens} tokens)"
    )
    print("|---|---|")
    print(f"| one server, -t 2, {2 * args.slots} slots | {one:.1f} |")
    print(f"| pool of two servers, -t 1 each pinned to a core, {args.slots} slots each | {two:.1f} |")
    print(f"two replicas / one server: {two / one:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
