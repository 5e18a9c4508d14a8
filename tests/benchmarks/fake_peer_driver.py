"""A fake peer for the bench_peers tests, speaking the drivers' protocol (`benchmarks/peers/_driver_io.py`).

Approaches: `greedy` asks the server once at temperature 0 (stdlib HTTP, as a peer's own client would) and reports
the usage the server returned; `echo` answers each problem with a fixed reply, no server (`noisy` too, printing to stdout as it goes); `refuse` declines in its
header; `crash` dies before its header; `die_after_one` answers one problem, then exits.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "peers"))

from _driver_io import common_args, emit, refuse, serve

REPLY = "```python\ndef add(a, b):\n    return a + b\n```"


def main() -> None:
    args = common_args("fake peer").parse_args()
    if args.approach == "crash":
        sys.stderr.write("fake peer: cannot import its library\n")
        sys.exit(1)
    if args.approach == "refuse":
        refuse("fake", "the fake peer refuses this approach")
    answered = []

    def solve(task: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if args.approach == "die_after_one" and answered:
            sys.stdout.flush()
            os._exit(1)
        answered.append(task["problem_id"])
        if args.approach == "noisy":
            print("Retrying after 0.4s (attempt 1) - a peer printing to stdout")
        if args.approach != "greedy":
            return REPLY, {}
        body = {"model": args.model, "messages": [{"role": "user", "content": task["prompt"]}], "temperature": 0,
                "max_tokens": args.max_tokens}  # fmt: skip
        request = urllib.request.Request(f"{args.base_url}/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=600) as response:
            reply = json.loads(response.read())
        return reply["choices"][0]["message"]["content"], reply.get("usage", {})

    if args.approach not in ("greedy", "echo", "noisy", "die_after_one"):
        emit({"ready": False, "error": f"unknown approach {args.approach}"})
        sys.exit(3)
    serve("fake", "0.0.1", args.approach, {"temperature": 0}, solve, args.concurrency)


if __name__ == "__main__":
    main()
