"""The line protocol every peer driver speaks (stdlib only: it runs in the peer's own venv, never thinktank's).

The benchmark starts `<peer venv>/bin/python <peer>_driver.py --approach A --base-url URL ...` and then:

1. the driver imports its peer, builds the approach and prints one header line
   `{"ready": true, "peer": ..., "version": ..., "approach": ..., "settings": {...}}` (or `{"ready": false,
   "error": "..."}` and exits 3 when the peer cannot be imported or the approach does not exist);
2. the benchmark reads the server's counters, then writes the problems, one JSON object a line (a thinktank
   `TaskInput` as a dict: only what a technique may see), and closes stdin;
3. the driver solves them (up to `--concurrency` at once) and prints one line per problem as it finishes:
   `{"id": ..., "text": <the reply the peer chose>, "error": null | "...", "seconds": ..., "usage": {...}}`.

The benchmark extracts and grades each `text` with thinktank's kinds, so grading is the same for every system.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Solve = Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]

_print_lock = threading.Lock()
#: the protocol's channel; the peer's own prints (its_hub prints its retries) go to stderr, i.e. the driver's log
_PROTOCOL = sys.stdout
sys.stdout = sys.stderr


def common_args(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--approach", required=True)
    parser.add_argument("--base-url", required=True, help="the OpenAI-compatible endpoint, ending in /v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--temperature", type=float, default=0.8, help="for the sampling approaches")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--samples", type=int, default=8, help="the sampling budget per query (n / N / budget)")
    parser.add_argument("--concurrency", type=int, default=1, help="problems solved at once")
    parser.add_argument("--checker", default="", help="a command running thinktank's public checks (JSONL)")
    return parser


def emit(obj: dict[str, Any]) -> None:
    with _print_lock:
        _PROTOCOL.write(json.dumps(obj) + "\n")
        _PROTOCOL.flush()


def refuse(peer: str, error: str) -> None:
    emit({"ready": False, "peer": peer, "error": error})
    sys.exit(3)


def serve(peer: str, version: str, approach: str, settings: dict[str, Any], solve: Solve, concurrency: int) -> None:
    """Announce readiness, then solve every problem on stdin, printing each answer as soon as it is known.

    A failure on one problem is that problem's `error`, never the run's: the peer's own exception text is kept."""
    emit({"ready": True, "peer": peer, "version": version, "approach": approach, "settings": settings})

    def one(task: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            text, usage = solve(task)
            error = None
        except Exception as exc:  # the peer's failure on this problem, reported, not fatal
            text, usage, error = "", {}, f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        emit({"id": task["problem_id"], "text": text, "error": error, "seconds": time.perf_counter() - started,
              "usage": usage})  # fmt: skip

    tasks = [json.loads(line) for line in sys.stdin if line.strip()]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, tasks))
