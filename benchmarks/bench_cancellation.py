"""Does cancelling a call stop the server's work? Two measurements on one embedded llama-server.

    .venv/bin/python benchmarks/bench_cancellation.py --repeats 30 --problems 10
    .venv/bin/python benchmarks/bench_cancellation.py --binary /path/to/other/llama-server   # compare a build

1. `--repeats` times, for each way of sending samples (one call per sample, one shared n>1 call): start a long
   2-sample generation, cancel it after 0.5-2.5 s while polling /metrics every 0.2 s (as monitoring does), and
   time until the server's `requests_processing` is 0 again. Passing = stopped within 2 s.
2. adaptive-vote on `--problems` HumanEval problems, no cache; with `--lookahead k` it launches k waves ahead
   and cancels those still running when it stops (the preset, k = 0, has nothing in flight to cancel);
   `--per-sample-calls` sends each sample as its own (non-streamed) call, as on a `backend start` server:
   tokens the server generated (`llamacpp:tokens_predicted_total`) vs the completion tokens thinktank accounts
   for. Cancelled calls are accounted as 0 tokens, so the gap is what cancelled calls generated, before and
   after the cancel.

Run on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from thinktank.arch import load_architecture
from thinktank.backends.llama_server import LlamaServer, server_metrics
from thinktank.engine import Engine
from thinktank.eval.runner import run_eval
from thinktank.eval.store import RunStore
from thinktank.tasks.registry import get_task
from thinktank.types import GenerationRequest


async def idle(server: LlamaServer, patience_s: float) -> bool:
    """Wait for a quiet server, polling slowly: an unpatched server checks for hung-up clients only after 1 s
    without any result posted, and faster polls would keep it from ever noticing."""
    deadline = time.monotonic() + patience_s
    while (await asyncio.to_thread(server_metrics, server.base_url))["llamacpp:requests_processing"] > 0:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(1.5)
    return True


async def stop_time(server: LlamaServer, shared_call: bool, cancel_after_s: float, patience_s: float = 15.0) -> float:
    """Seconds from cancel() until the server has no request in flight (inf if not within `patience_s`)."""
    if not await idle(server, 300):  # a call that was never stopped runs to max_tokens: start from a quiet server
        raise RuntimeError("the server is still busy with an earlier run after 300 s")
    options = {} if shared_call else {"supports_native_n": False, "seeded_native_n": False}
    async with server.backend(**options) as backend:
        ctx = Engine({server.model: backend}).context(use_cache=False)
        request = GenerationRequest.from_prompt(
            "Write a very long story about a dragon.", server.model, n=2, temperature=0.8, max_tokens=3000
        )
        task = asyncio.create_task(ctx.generate(request))
        await asyncio.sleep(cancel_after_s)
        cancelled_at = time.monotonic()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    while time.monotonic() - cancelled_at < patience_s:
        if (await asyncio.to_thread(server_metrics, server.base_url))["llamacpp:requests_processing"] == 0:
            return time.monotonic() - cancelled_at
        await asyncio.sleep(0.2)
    return float("inf")


async def adaptive_gap(server: LlamaServer, problems: int, lookahead: int, per_sample: bool) -> tuple[float, int, int]:
    """adaptive-vote as shipped (`lookahead` 0: one wave at a time, nothing to cancel) or launching waves ahead."""
    with tempfile.TemporaryDirectory() as spec_dir:
        spec = Path(spec_dir) / "adaptive.yaml"
        spec.write_text(
            "name: adaptive-vote-lookahead\nlayers:\n  - adaptive: {max_n: 8, wave: 2, temperature: 0.8,"
            f" stop_confidence: 0.95, first_pass: true, lookahead: {lookahead}}}\n"
        )
        arch = load_architecture("adaptive-vote" if lookahead == 0 else str(spec), [server.model])
    tasks = get_task("humaneval").load(limit=problems)
    async with server.backend(**({"max_n_per_call": 1} if per_sample else {})) as backend:
        engine = Engine({server.model: backend})
        with tempfile.TemporaryDirectory() as run_dir:
            store = RunStore(Path(run_dir))
            before = (await asyncio.to_thread(server_metrics, server.base_url))["llamacpp:tokens_predicted_total"]
            await run_eval(engine, arch, tasks, store, concurrency=4)
            await asyncio.sleep(2.5)  # anything a cancelled call still generates lands in the counter by now
            after = (await asyncio.to_thread(server_metrics, server.base_url))["llamacpp:tokens_predicted_total"]
            records = store.records()
    accounted = sum(r.completion_tokens for r in records)
    cancelled = sum(_cancelled_calls(r.trace) for r in records)
    return after - before, accounted, cancelled


def _cancelled_calls(node: dict) -> int:
    return sum(c["status"] == "cancelled" for c in node.get("calls", [])) + sum(map(_cancelled_calls, node.get("children", [])))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="model for part 2")
    parser.add_argument("--loop-model", default="smollm2-135m-instruct", help="model for part 1")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--problems", type=int, default=10, help="HumanEval problems for part 2 (0 skips it)")
    parser.add_argument("--lookahead", type=int, default=0, help="adaptive waves launched ahead (0 = the preset)")
    parser.add_argument(
        "--per-sample-calls", action="store_true", help="part 2 sends one call per sample, as on a `backend start` server"
    )
    parser.add_argument("--binary", type=Path, default=None, help="llama-server to test (default: thinktank's build)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    async with LlamaServer(args.loop_model, slots=4, ctx_per_slot=4096, binary=args.binary) as server:
        for shared_call in (False, True) if args.repeats else ():
            times = [await stop_time(server, shared_call, rng.uniform(0.5, 2.5)) for _ in range(args.repeats)]
            ok = sum(t <= 2.0 for t in times)
            finite = sorted(t for t in times if t != float("inf"))
            worst = f"{max(times):.2f}s" if len(finite) == len(times) else f"{len(times) - len(finite)} never stopped"
            mode = "shared n>1 call" if shared_call else "one call per sample"
            median = f"{finite[len(finite) // 2]:.2f}s" if finite else "-"
            print(f"{mode}: stopped within 2 s in {ok}/{len(times)} runs (median {median}, worst {worst})", flush=True)
    if args.problems:
        async with LlamaServer(args.model, slots=4, binary=args.binary) as server:
            generated, accounted, cancelled = await adaptive_gap(server, args.problems, args.lookahead, args.per_sample_calls)
        calls = ", one call per sample" if args.per_sample_calls else ""
        print(
            f"adaptive-vote (lookahead {args.lookahead}{calls}) on {args.problems} HumanEval problems ({args.model}):"
            f" server generated {generated:.0f} tokens,"
            f" thinktank accounts {accounted}; {cancelled} cancelled calls generated {generated - accounted:.0f}"
            f" ({(generated - accounted) / max(generated, 1):.1%} of the server's tokens)"
        )


if __name__ == "__main__":
    asyncio.run(main())
