"""Two embedded servers on one machine: does one starve the other? Decode throughput per placement, same run.

    .venv/bin/python benchmarks/bench_colocated.py --window 30

For each placement (threads, `--poll`, CPU pinning) it starts a 0.5B and a 1.5B llama-server and keeps each busy
with `--load` concurrent streamed requests for `--window` seconds, counting the tokens that arrive inside the
window: first each server alone (the other idle beside it), then both at once. Both at once is scored as the sum of
each server's share of its own alone-throughput: 1.0 means co-location loses nothing against running the two loads
one after the other, below 1.0 the two servers cost each other throughput. A `solo` row (the 0.5B server with no
neighbour at all) is the reference; the last column scores both at once against the best alone-throughput of any
placement in the run, so a placement that halves each server's speed to share the cores cannot look good by it.
Run on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

from _stream_load import Gate, measure

from thinktank.backends.llama_server import LlamaServer
from thinktank.backends.speculation import Speculation
from thinktank.backends.turns import Turns

SMALL, LARGE = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"


@dataclass(frozen=True)
class Placement:
    name: str
    threads: tuple[int, int]  # (small, large)
    poll: tuple[int | None, int | None] = (None, None)
    cpus: tuple[str | None, str | None] = (None, None)
    background: tuple[bool, bool] = (False, False)
    takes_turns: bool = False  # requests pass through `backends.turns.Turns`, as the engine's do


def placements(cores: int) -> list[Placement]:
    half = max(1, cores // 2)
    return [
        Placement("default (-t all, --poll 50)", (cores, cores)),
        Placement("-t all, --poll 0", (cores, cores), (0, 0)),
        Placement(f"-t {half} each, pinned apart, --poll 0", (half, half), (0, 0), (f"0-{half - 1}", f"{half}-{cores - 1}")),
        Placement("-t all, --poll 0, 1.5B in the background", (cores, cores), (0, 0), background=(False, True)),
        Placement("-t all, 1.5B in the background with --poll 0", (cores, cores), (None, 0), background=(False, True)),
        Placement("-t all, 1.5B in the background", (cores, cores), background=(False, True)),
        Placement("-t all, taking turns (thinktank's default)", (cores, cores), takes_turns=True),
    ]


@contextlib.asynccontextmanager
async def server(model: str, p: Placement, index: int, slots: int) -> AsyncIterator[str]:
    async with LlamaServer(
        model, slots=slots, threads=p.threads[index], poll=p.poll[index], cpus=p.cpus[index],
        background=p.background[index], speculation=Speculation(),
    ) as s:  # fmt: skip
        yield s.base_url.removesuffix("/v1")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window", type=float, default=30.0, help="seconds counted per phase")
    parser.add_argument("--load", type=int, default=4, help="concurrent requests per server (= its slots)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per request (a turn lasts about one request)")
    parser.add_argument("--only", type=int, nargs="*", help="indices of the placements to run (default: all)")
    args = parser.parse_args()
    cores = os.cpu_count() or 2
    rows = []
    async with server(SMALL, placements(cores)[0], 0, args.load) as small:
        (solo,) = await measure([small], args.load, args.window, tokens=args.tokens)
    print(f"solo: {SMALL} alone on the machine, default placement: {solo:.1f} tok/s", flush=True)
    chosen = [p for i, p in enumerate(placements(cores)) if args.only is None or i in args.only]
    for p in chosen:
        async with (
            server(SMALL, p, 0, args.load) as small,
            server(LARGE, p, 1, args.load) as large,
        ):
            turns = Turns()
            gates: list[Gate | None] = [None, None]
            if p.takes_turns:
                gates = [partial(turns.turn, "small"), partial(turns.turn, "large")]
            (small_alone,) = await measure([small], args.load, args.window, tokens=args.tokens, gates=gates[:1])
            (large_alone,) = await measure([large], args.load, args.window, tokens=args.tokens, gates=gates[1:])
            small_both, large_both = await measure([small, large], args.load, args.window, tokens=args.tokens, gates=gates)
        combined = small_both / small_alone + large_both / large_alone
        rows.append((p.name, small_alone, large_alone, small_both, large_both, combined))
        print(f"{p.name}: {rows[-1][1:]}", flush=True)
    best_small, best_large = max(r[1] for r in rows), max(r[2] for r in rows)
    print(
        "\n| placement | 0.5B alone | 1.5B alone | 0.5B with 1.5B busy | 1.5B with 0.5B busy | combined share"
        " | vs the best alone |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, sa, la, sb, lb, c in rows:
        print(f"| {name} | {sa:.1f} | {la:.1f} | {sb:.1f} | {lb:.1f} | {c:.2f} | {sb / best_small + lb / best_large:.2f} |")
    print(
        f"(tok/s, {args.load} concurrent streamed requests per server, {args.window:.0f} s windows; "
        f"solo 0.5B with no neighbour: {solo:.1f} tok/s)"
    )


if __name__ == "__main__":
    asyncio.run(main())
