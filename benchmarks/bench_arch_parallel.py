"""In-query parallelism: a sample-8 architecture vs the same 8 calls issued one after another.

    .venv/bin/python benchmarks/bench_arch_parallel.py --arch sample-8-vote --problems 3

Same server, same requests (messages, seeds, max_tokens), no cache, measured in one run.
The architecture's time includes its selection step (vote: sandbox runs for code).
The architecture runs twice: with the llama-server client's default (seeded samples share
calls, the prompt is evaluated once) and with one call per sample (`fan-out`).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from thinktank.arch import load_architecture
from thinktank.backends.llama_server import LlamaServer
from thinktank.engine import Engine
from thinktank.tasks.humaneval import HumanEvalTask
from thinktank.techniques.generate import Generate
from thinktank.types import GenerationRequest


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--arch", default="sample-8-vote")
    parser.add_argument("--problems", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args()
    problems = HumanEvalTask().load(limit=args.problems)
    async with (
        LlamaServer(args.model, slots=args.slots) as server,
        server.backend() as backend,
        server.backend(supports_native_n=False, seeded_native_n=False) as fan_out_backend,
    ):
        engine = Engine({server.model: backend})
        fan_out = Engine({server.model: fan_out_backend})
        arch = load_architecture(args.arch, [server.model])
        generate = arch.layers[0][0].technique
        assert isinstance(generate, Generate), "the first layer must be one generate node"
        par_wall = seq_wall = fan_wall = 0.0
        par_tokens = seq_tokens = fan_tokens = 0
        for problem in problems:
            ctx = engine.context(use_cache=False)
            started = time.perf_counter()
            await arch.run(problem.input, ctx)
            par_wall += time.perf_counter() - started
            par_tokens += ctx.usage.completion_tokens

            ctx = fan_out.context(use_cache=False)
            started = time.perf_counter()
            await arch.run(problem.input, ctx)
            fan_wall += time.perf_counter() - started
            fan_tokens += ctx.usage.completion_tokens

            base = GenerationRequest(generate.messages(problem.input), server.model, temperature=generate.temperature,
                                     max_tokens=generate.max_tokens)  # fmt: skip
            ctx = engine.context(use_cache=False)
            started = time.perf_counter()
            for i in range(generate.n):
                await ctx.generate(base.with_(seed=generate.seed + i))
            seq_wall += time.perf_counter() - started
            seq_tokens += ctx.usage.completion_tokens
    print(f"model={args.model} arch={args.arch} problems={args.problems} slots={args.slots}")
    print(f"architecture, shared-prompt calls:        {par_wall:.1f}s, {par_tokens} completion tokens")
    print(f"architecture, one call per sample:        {fan_wall:.1f}s, {fan_tokens} completion tokens")
    print(f"same {generate.n} calls, sequential:          {seq_wall:.1f}s, {seq_tokens} completion tokens")
    print(f"wall-time ratio architecture/sequential: {par_wall / seq_wall:.2f} (one call per sample: {fan_wall / seq_wall:.2f})")


if __name__ == "__main__":
    asyncio.run(main())
