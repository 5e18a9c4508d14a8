"""How close a finished eval run came to the server's decode limit, and where the rest of its wall time went.

    .venv/bin/python benchmarks/utilisation.py runs/b17/sample-8-exec --limit 51.2

`--limit`: the best aggregate decode rate of the same server on this machine (tok/s, `bench_slots.py`). Reads the
run's results DB: completion tokens over the run's wall time give the achieved rate; each problem's trace splits
its time into generation (first call's start to last call's end; a call's wait for a slot is its end minus its
start minus its HTTP latency), the tail after it (sandbox checks, voting), and how much longer the slowest call
took than the median one (slots idle while it finishes).
Run it on a fresh (`--no-cache`) run: cached calls decode nothing.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
from pathlib import Path
from typing import Any


def calls_of(node: dict[str, Any]) -> list[dict[str, Any]]:
    return list(node["calls"]) + [c for child in node["children"] for c in calls_of(child)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--limit", type=float, required=True, help="best aggregate decode tok/s (bench_slots.py)")
    args = parser.parse_args()
    db = sqlite3.connect(args.run_dir / "results.sqlite")
    rows = db.execute("SELECT completion_tokens, latency_s, finished_at, trace FROM results").fetchall()
    if not rows:
        raise SystemExit(f"no results in {args.run_dir}")
    tokens = sum(r[0] for r in rows)
    wall = max(r[2] for r in rows) - min(r[2] - r[1] for r in rows)
    generation = tail = spread = waiting = 0.0
    for _, latency, _, trace in rows:
        calls = [c for c in calls_of(json.loads(trace)) if c["status"] == "ok"]
        if not calls:
            continue
        ends = [c.get("ended_s") or c["started_s"] + c["latency_s"] for c in calls]  # traces before ended_s: no wait
        first, last = min(c["started_s"] for c in calls), max(ends)
        generation += last - first
        tail += max(0.0, latency - last)
        waiting += sum(end - c["started_s"] - c["latency_s"] for c, end in zip(calls, ends, strict=True)) / len(calls)
        latencies = [c["latency_s"] for c in calls]
        spread += max(latencies) - statistics.median(latencies)
    rate = tokens / wall
    print(f"{args.run_dir}: {len(rows)} problems, {tokens} completion tokens in {wall:.0f} s = {rate:.1f} tok/s,")
    print(f"  {rate / args.limit:.0%} of the {args.limit:.1f} tok/s limit")
    n = len(rows)
    print(
        f"  per problem: generation {generation / n:.1f} s, in which a call waited {waiting / n:.1f} s for slots on"
        f" average and the slowest call took {spread / n:.1f} s longer than the median one;"
        f" after the last call (sandbox, vote) {tail / n:.1f} s"
    )


if __name__ == "__main__":
    main()
