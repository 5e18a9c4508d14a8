"""What counting each choice's tokens costs on llama-server: an n=8 call plain, streamed, and with logprobs.

    .venv/bin/python benchmarks/bench_choice_usage.py --reps 2

llama-server's `usage` for a call of n choices covers the first choice only. Two ways to count the others:
ask for per-token logprobs (the server then computes token probabilities at every step) or stream the call
and read the usage chunk it sends after each choice (what `OpenAICompatBackend(count_choice_tokens=True)`
does). Same prompt, seeds and max_tokens for each variant, interleaved (each goes first in turn), in one run;
raw httpx, no engine.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from thinktank.backends.llama_server import LlamaServer

PROMPT = "Write a Python function that parses a CSV line with quoted fields, with a docstring and tests."


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    base = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], "n": args.n, "temperature": 0.8,
            "max_tokens": args.max_tokens}  # fmt: skip
    variants = {
        "plain (first choice's usage only)": {},
        "streamed, usage chunk per choice": {"stream": True, "stream_options": {"include_usage": True}},
        "logprobs, top_logprobs=1": {"logprobs": True, "top_logprobs": 1},
    }
    walls: dict[str, float] = dict.fromkeys(variants, 0.0)
    async with LlamaServer(args.model, slots=args.n) as server, httpx.AsyncClient(timeout=900) as client:
        url = server.base_url + "/chat/completions"
        await client.post(url, json={**base, "max_tokens": 8, "seed": 0})  # warm-up
        names = list(variants)
        for rep in range(args.reps):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:  # each variant goes first in turn
                extra = variants[name]
                started = time.perf_counter()
                async with client.stream("POST", url, json={**base, **extra, "seed": 1 + rep}) as response:
                    await response.aread()
                walls[name] += time.perf_counter() - started
    print(f"model={args.model} n={args.n} max_tokens={args.max_tokens} reps={args.reps} (same seeds per variant)")
    plain = walls["plain (first choice's usage only)"]
    for name, wall in walls.items():
        print(f"{name:36s} {wall:6.1f} s  ({wall / plain:.2f}x plain)")


if __name__ == "__main__":
    asyncio.run(main())
