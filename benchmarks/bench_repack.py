"""Repacked vs unrepacked weights on the embedded llama-server: prompt evaluation and decode speed, same run.

A speculating server runs with `--no-repack` (one matmul kernel for every batch size keeps speculation bit-exact);
this measures what that costs, so the default (no speculation, repacked weights) rests on a figure. Servers are
started alternately (A B A B ...), one slot, no speculation, prompt cache off; medians of the server's own timings.

    .venv/bin/python benchmarks/bench_repack.py --model qwen2.5-coder-1.5b-instruct --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

import httpx

from thinktank.backends.llama_server import LlamaServer
from thinktank.backends.speculation import Speculation

PROMPT = 'def fibonacci(n):\n    """Return the n-th Fibonacci number, iteratively."""\n' * 12


async def timings(model: str, repack: bool, requests: int, tokens: int) -> list[tuple[float, float]]:
    async with LlamaServer(model, slots=1, speculation=Speculation(), repack=repack) as server:
        base = server.base_url.removesuffix("/v1")
        out = []
        async with httpx.AsyncClient(timeout=600) as client:
            for i in range(requests):
                body = {"prompt": f"{PROMPT}# variant {i}\n", "n_predict": tokens, "temperature": 0, "cache_prompt": False}
                t = (await client.post(f"{base}/completion", json=body)).json()["timings"]
                out.append((t["prompt_per_second"], t["predicted_per_second"]))
        return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    seen: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(args.rounds):
        for repack in (True, False):
            seen[repack] += await timings(args.model, repack, args.requests, args.tokens)
    rows = {k: (statistics.median(p for p, _ in v), statistics.median(d for _, d in v)) for k, v in seen.items()}
    print(f"| weights | prompt tok/s | decode tok/s |  ({args.model}, {args.rounds} rounds x {args.requests} requests)")
    print("|---|---|---|")
    for repack, (p, d) in rows.items():
        print(f"| {'repacked' if repack else '--no-repack'} | {p:.1f} | {d:.1f} |")
    print(f"repacked / unrepacked: prompt {rows[True][0] / rows[False][0]:.2f}x, decode {rows[True][1] / rows[False][1]:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
