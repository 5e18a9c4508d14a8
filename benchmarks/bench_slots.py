"""Aggregate decode throughput of one embedded llama-server against its slot count, same run.

    .venv/bin/python benchmarks/bench_slots.py --model qwen2.5-coder-0.5b-instruct --slots 1 2 4 8 16 --window 20

For each slot count a fresh server is kept busy with as many concurrent streamed requests as it has slots, and the
tokens that arrive inside the window are counted (`_stream_load.py`). The best row is the machine's decode limit
that `sample-8-exec`'s utilisation is measured against (docs/benchmarks.md). Run on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio

from _stream_load import measure

from thinktank.backends.llama_server import LlamaServer
from thinktank.backends.speculation import Speculation


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--window", type=float, default=20.0, help="seconds counted per slot count")
    args = parser.parse_args()
    rows = []
    for slots in args.slots:
        async with LlamaServer(args.model, slots=slots, ctx_per_slot=1024, speculation=Speculation()) as server:
            (rate,) = await measure([server.base_url.removesuffix("/v1")], slots, args.window)
        rows.append((slots, rate))
        print(f"{slots} slots: {rate:.1f} tok/s", flush=True)
    best = max(rate for _, rate in rows)
    print(f"\n| slots | aggregate decode tok/s | vs 1 slot | vs best |  ({args.model}, {args.window:.0f} s windows)")
    print("|---|---|---|---|")
    for slots, rate in rows:
        print(f"| {slots} | {rate:.1f} | {rate / rows[0][1]:.2f}x | {rate / best:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
