"""Speculative decoding in the embedded llama-server: decode speed with vs without, in one run (issue 17).

    .venv/bin/python benchmarks/bench_speculative.py                       # 3 problems each, ~10 min idle
    .venv/bin/python benchmarks/bench_speculative.py --problems 2 --max-tokens 64 --repair-tokens 192

1. The cascade's 1.5B greedy stage: the first `--problems` HumanEval prompts at temperature 0 on
   qwen2.5-coder-1.5b-instruct alone, with the 0.5B draft, and as shipped (n-grams + draft). Target: ≥ 1.5×.
2. Repair-like copying calls: the 0.5B's greedy answer to each prompt, sent back in `repair`'s own prompt
   with a failing-check line, at repair's temperature 0.2 and a fixed seed, without and with n-gram lookup.
   Target: ≥ 1.3×. The same 0.5B servers also answer the plain prompts, which shows what n-grams cost on
   calls that copy nothing (they are on for every server).
3. "off, repacked": the 1.5B as servers ran before (weights repacked for the CPU's gemm kernels), which shows
   what `--no-repack` (one kernel for every batch size, so speculation stays lossless) costs.

Decode speed is the server's own (`timings`: predicted tokens / predicted ms, prompt evaluation excluded);
wall time per call is shown too. One slot per server and `-t` as thinktank starts it (all cores); the servers
of one comparison are up together and take each prompt in turn, so load from other processes hits both alike.
Outputs with and without are compared (`identical`). Run on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

from thinktank.backends.llama_server import LlamaServer
from thinktank.backends.speculation import Speculation, SpeculationSettings
from thinktank.problems import Problem
from thinktank.tasks.registry import get_task
from thinktank.techniques.repair import PROMPT as REPAIR_PROMPT

BIG, SMALL = "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"
FEEDBACK = "Checking it gave: AssertionError: the first example in the docstring returned a different value."


@dataclass
class Tally:
    tokens: int = 0
    decode_ms: float = 0.0
    wall_s: float = 0.0
    drafted: int = 0
    accepted: int = 0
    texts: list[str] = field(default_factory=list)

    def add(self, reply: dict, wall_s: float) -> None:
        timings = reply["timings"]
        self.tokens += timings["predicted_n"]
        self.decode_ms += timings["predicted_ms"]
        self.wall_s += wall_s
        self.drafted += timings.get("draft_n", 0)
        self.accepted += timings.get("draft_n_accepted", 0)
        self.texts.append(reply["choices"][0]["message"]["content"])

    @property
    def decode_tps(self) -> float:
        return 1000 * self.tokens / self.decode_ms if self.decode_ms else 0.0

    @property
    def wall_tps(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0


async def chat(client: httpx.AsyncClient, server: LlamaServer, content: str, **options: object) -> tuple[dict, float]:
    started = time.monotonic()
    response = await client.post(
        f"{server.base_url}/chat/completions", json={"messages": [{"role": "user", "content": content}], **options}
    )
    response.raise_for_status()
    return response.json(), time.monotonic() - started


async def compare(model: str, configs: dict[str, Speculation | None], prompts: list[str], **options: object) -> dict[str, Tally]:
    """Every prompt to every server in turn (so background load hits all alike); one tally per configuration.
    A configuration of None: no speculation, weights repacked (as servers ran before speculation came)."""
    servers = {
        name: LlamaServer(model, slots=1, ctx_per_slot=4096, speculation=spec or Speculation(), repack=spec is None)
        for name, spec in configs.items()
    }
    tallies = {name: Tally() for name in configs}
    try:
        for server in servers.values():
            await server.start()
        if len({server.port for server in servers.values()}) < len(servers):
            raise RuntimeError("two servers of one comparison share a port")
        async with httpx.AsyncClient(timeout=1800) as client:
            for prompt in prompts:
                for name, server in servers.items():
                    reply, wall = await chat(client, server, prompt, **options)
                    tallies[name].add(reply, wall)
                    timings = reply["timings"]
                    speed = f"{timings['predicted_n']} tokens, {timings['predicted_per_second']:.2f} tok/s, {wall:.1f} s"
                    print(f"  {model} {name} (:{server.port}): {speed}", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.terminate()
    return tallies


def rows(title: str, tallies: dict[str, Tally], base: str) -> list[str]:
    reference = tallies[base]
    lines = []
    for name, t in tallies.items():
        same = sum(a == b for a, b in zip(t.texts, reference.texts, strict=True))
        acceptance = f"{t.accepted}/{t.drafted}" if t.drafted else "–"
        lines.append(
            f"| {title} | {name} | {t.tokens} | {t.decode_tps:.2f} | {t.decode_tps / reference.decode_tps:.2f}× |"
            f" {t.wall_tps:.2f} | {t.wall_tps / reference.wall_tps:.2f}× | {acceptance} | {same}/{len(t.texts)} |"
        )
    return lines


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


async def main(args: argparse.Namespace) -> None:
    problems: list[Problem] = get_task("humaneval").load(limit=args.problems)
    prompts = [p.input.prompt for p in problems]
    greedy = {"temperature": 0.0, "max_tokens": args.max_tokens}
    table = [
        "| calls | speculation | tokens | decode tok/s | vs off | wall tok/s | vs off | accepted/drafted | identical |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    big = await compare(
        BIG,
        {
            "off": Speculation(),
            "off, repacked": None,
            "draft": Speculation(draft=SMALL),
            "shipped": SpeculationSettings(enabled=True).for_model(BIG),
        },
        prompts,
        **greedy,
    )
    table += rows(f"1.5B greedy, {len(prompts)} HumanEval", big, "off")

    small_configs = {"off": Speculation(), args.ngram: Speculation(ngram=args.ngram)}
    plain = await compare(SMALL, small_configs, prompts, **greedy)
    repairs = [
        REPAIR_PROMPT.format(prompt=p, lang="python", answer=answer, feedback=FEEDBACK, what="function")
        for p, answer in zip(prompts, plain["off"].texts, strict=True)
    ]
    repair = await compare(SMALL, small_configs, repairs, temperature=0.2, seed=1, max_tokens=args.repair_tokens)
    table += rows(f"0.5B repair rounds, {len(repairs)}", repair, "off")
    table += rows(f"0.5B first answers, {len(prompts)} (no copying)", plain, "off")

    print(f"CPU: {cpu_model()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("\n".join(table))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=3, help="HumanEval prompts per comparison")
    parser.add_argument("--max-tokens", type=int, default=96, help="tokens per greedy call")
    parser.add_argument("--repair-tokens", type=int, default=256, help="tokens per repair call")
    parser.add_argument("--ngram", default="ngram-mod", help="the n-gram source to measure (ngram-simple, ngram-mod, …)")
    asyncio.run(main(parser.parse_args()))
