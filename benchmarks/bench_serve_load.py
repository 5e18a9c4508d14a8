"""Load test of `thinktank serve`: many concurrent clients, throughput, latency percentiles, status codes (issue #6).

The server runs in its own process (this script started with `--serve-only`), so the load generator
does not share its event loop or GIL. By default the architectures run over an in-process instant
backend, which measures thinktank's own overhead (HTTP, validation, limits, engine, trace, metrics);
`--model NAME` serves the real embedded llama-server instead (slow: use few requests).

Checks: no 5xx ever; 429s only when the per-key limit plus its queue is below the number of clients
(all clients share one key here), and then they carry Retry-After.

    .venv/bin/python benchmarks/bench_serve_load.py                                  # 100 clients, 3000 requests, `single`
    .venv/bin/python benchmarks/bench_serve_load.py --arch sample-4-vote --stream
    .venv/bin/python benchmarks/bench_serve_load.py --max-concurrency-per-key 8 --queue 16  # intended 429s
    .venv/bin/python benchmarks/bench_serve_load.py --model smollm2-135m-instruct --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import itertools
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

from thinktank.eval.metrics import percentile

FAKE_SPECS = {
    "single": {"name": "single", "layers": [{"generate": {"n": 1, "max_tokens": 64}}]},
    "sample-4-vote": {"name": "sample-4-vote", "layers": [{"generate": {"n": 4, "temperature": 0.8}}, {"vote": {}}]},
}


def serve_only(args: argparse.Namespace) -> None:
    """The server process: uvicorn over the fake backend (or the embedded llama-server with --model)."""
    import uvicorn

    from thinktank.arch import build_architecture, load_architecture
    from thinktank.backends import ScriptedBackend
    from thinktank.engine import Engine
    from thinktank.models.packs import model_label
    from thinktank.runtime import open_engine
    from thinktank.serve import ServeSettings, create_app

    settings = ServeSettings(
        max_concurrency_per_key=args.max_concurrency_per_key or args.clients,
        queue_per_key=args.clients if args.queue is None else args.queue,
        use_cache=False,
        keepalive_s=5.0,
    )
    if args.model:
        label = model_label(args.model)
        engine = functools.partial(open_engine, [args.model], slots=args.slots, use_cache=False)
        archs = [load_architecture(args.arch, [label])]
        app = create_app(engine, archs, settings)
    else:
        delay = args.backend_delay_ms / 1000
        backend = ScriptedBackend(lambda request, i: "The answer is 42.", max_concurrency=100_000, delay_s=delay)
        archs = [build_architecture(spec, ["fake"]) for spec in FAKE_SPECS.values()]
        app = create_app(Engine({"fake": backend}), archs, settings)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, timeout_graceful_shutdown=30)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    retry_after_missing: int = 0


async def load(args: argparse.Namespace, url: str) -> tuple[Tally, float]:
    """`args.requests` chat completions from `args.clients` concurrent clients; returns the tally and wall seconds."""
    body = {"model": args.arch, "messages": [{"role": "user", "content": "What is 6 times 7?"}], "stream": args.stream}
    if args.model:
        body["max_tokens"] = 16
    tally = Tally()
    counter = itertools.count()
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:

        async def client() -> None:
            while next(counter) < args.requests:
                started = time.perf_counter()
                async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                    await response.aread()
                tally.latencies.append(time.perf_counter() - started)
                tally.statuses[response.status_code] += 1
                if response.status_code == 429 and "retry-after" not in response.headers:
                    tally.retry_after_missing += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(args.clients)))
        return tally, time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling the child's readiness
    raise SystemExit("the server did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--arch", default="single", help=f"fake backend: {', '.join(FAKE_SPECS)}; with --model: a preset or YAML")
    parser.add_argument("--stream", action="store_true", help="stream every response (SSE)")
    parser.add_argument("--model", help="serve this model with the embedded llama-server instead of the fake backend")
    parser.add_argument("--slots", type=int, default=4, help="llama-server slots (with --model)")
    parser.add_argument("--backend-delay-ms", type=float, default=0.0, help="fake backend latency per call")
    parser.add_argument("--max-concurrency-per-key", type=int, help="server limit (default: --clients, so no 429)")
    parser.add_argument("--queue", type=int, help="server queue per key (default: --clients)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--serve-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_only:
        serve_only(args)
        return

    args.port = args.port or free_port()
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, __file__, "--serve-only", *sys.argv[1:], "--port", str(args.port)])
    try:
        wait_healthy(url, server, timeout_s=600 if args.model else 30)
        tally, wall = asyncio.run(load(args, url))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)

    admitted = (args.max_concurrency_per_key or args.clients) + (args.clients if args.queue is None else args.queue)
    ms = sorted(x * 1000 for x in tally.latencies)
    backend = args.model or f"fake, {args.backend_delay_ms:g} ms per call"
    print(f"{args.requests} requests, {args.clients} clients, arch {args.arch}{' (stream)' if args.stream else ''}, {backend}")
    print(f"throughput {args.requests / wall:.0f} req/s over {wall:.2f} s")
    print(f"latency p50 {percentile(ms, 50):.1f} ms  p95 {percentile(ms, 95):.1f} ms  p99 {percentile(ms, 99):.1f} ms")
    print("status codes: " + ", ".join(f"{code}: {count}" for code, count in sorted(tally.statuses.items())))
    errors = sum(count for code, count in tally.statuses.items() if code >= 500)
    refused = tally.statuses.get(429, 0)
    problems = []
    if errors:
        problems.append(f"{errors} responses were 5xx")
    if refused and admitted >= args.clients:
        problems.append(f"{refused} unintended 429s (limit + queue = {admitted} >= {args.clients} clients)")
    if tally.retry_after_missing:
        problems.append(f"{tally.retry_after_missing} 429s without Retry-After")
    if set(tally.statuses) - {200, 429}:
        problems.append(f"unexpected statuses: {sorted(set(tally.statuses) - {200, 429})}")
    if problems:
        raise SystemExit("FAIL: " + "; ".join(problems))
    print("OK: no 5xx" + (f"; {refused} intended 429s (limit + queue = {admitted} < {args.clients} clients)" if refused else ""))


if __name__ == "__main__":
    main()
