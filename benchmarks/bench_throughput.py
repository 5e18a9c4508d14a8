"""Aggregate decode throughput of the embedded llama-server: 8 concurrent vs 8 sequential requests.

    .venv/bin/python benchmarks/bench_throughput.py --model qwen2.5-coder-0.5b-instruct --slots 4 --requests 8

Both phases run against the same server in the same run, so the ratio is what counts.
Tokens are the server's own counter (`llamacpp:tokens_predicted_total`), not ours.
Run on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from thinktank.backends.llama_server import LlamaServer, server_metrics
from thinktank.engine import Engine
from thinktank.types import GenerationRequest

PROMPT = "Write a Python function that parses a CSV line with quoted fields, with comments."


def predicted_tokens(server: LlamaServer) -> float:
    return server_metrics(server.base_url)["llamacpp:tokens_predicted_total"]


async def phase(
    engine: Engine, server: LlamaServer, model: str, requests: int, max_tokens: int, concurrent: bool
) -> tuple[float, float]:
    reqs = [
        GenerationRequest.from_prompt(PROMPT, model, temperature=0.8, max_tokens=max_tokens, seed=1000 * concurrent + i)
        for i in range(requests)
    ]
    before = predicted_tokens(server)
    started = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(engine.context(use_cache=False).generate(r) for r in reqs))
    else:
        for r in reqs:
            await engine.context(use_cache=False).generate(r)
    wall = time.perf_counter() - started
    return predicted_tokens(server) - before, wall


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    async with LlamaServer(args.model, slots=args.slots, ctx_per_slot=2048) as server, server.backend() as backend:
        engine = Engine({server.model: backend})
        await phase(engine, server, server.model, 2, 16, True)  # warm-up
        seq_tokens, seq_wall = await phase(engine, server, server.model, args.requests, args.max_tokens, False)
        con_tokens, con_wall = await phase(engine, server, server.model, args.requests, args.max_tokens, True)
    seq_tps, con_tps = seq_tokens / seq_wall, con_tokens / con_wall
    print(f"model={args.model} slots={args.slots} requests={args.requests} max_tokens={args.max_tokens}")
    print(f"sequential: {seq_tokens:.0f} tokens in {seq_wall:.1f}s = {seq_tps:.1f} tok/s")
    print(f"concurrent: {con_tokens:.0f} tokens in {con_wall:.1f}s = {con_tps:.1f} tok/s")
    print(f"ratio concurrent/sequential throughput: {con_tps / seq_tps:.2f}x; wall time ratio {con_wall / seq_wall:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
