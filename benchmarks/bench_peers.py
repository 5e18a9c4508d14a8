"""Side by side with a peer on the same llama-server: thinktank `sample-8-vote` vs its_hub's `SelfConsistency`.

    python3 -m venv ~/.cache/thinktank/peers-venv
    ~/.cache/thinktank/peers-venv/bin/pip install -e . 'its_hub[lm]==1.2.0'
    ~/.cache/thinktank/peers-venv/bin/python benchmarks/bench_peers.py --problems 12

Both get the same messages (the task's prompt), temperature, max_tokens and 8 samples per query, on one embedded
server; queries run one after another (the samples of a query in parallel), and which system goes first alternates
per problem so neither always finds the prompt in llama-server's cache. its_hub votes on a projection a user would
write for this prompt format (the text after the last "####", stripped); thinktank votes on math-equivalent values.
Both selected replies are graded the same way (thinktank's extractor and the task's hidden answer). The server's
`/metrics` counters are read around each system's calls to check what each reports as spent. its_hub is not a
thinktank dependency: it lives in its own venv.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from dataclasses import dataclass, field

from its_hub.api import GenerationUsage  # type: ignore[import-not-found]
from its_hub.core.algorithms.self_consistency import SelfConsistency  # type: ignore[import-not-found]
from its_hub.core.lms.openai_lm import OpenAICompatibleLanguageModel  # type: ignore[import-not-found]

from thinktank.arch import load_architecture
from thinktank.backends.llama_server import LlamaServer, server_metrics
from thinktank.engine import Engine
from thinktank.eval.grading import Grader
from thinktank.tasks.answers import extract
from thinktank.tasks.registry import get_task
from thinktank.techniques.generate import Generate

_AFTER_HASHES = re.compile(r"####\s*(.+)")


def hashes_projection(text: str) -> str:
    """What an its_hub user would vote on for '#### <number>' replies: the text after the last marker."""
    found = _AFTER_HASHES.findall(text)
    return found[-1].strip() if found else text.strip()


@dataclass
class Tally:
    correct: int = 0
    wall_s: float = 0.0
    reported_completion: int = 0
    server_completion: int = 0
    calls: int = 0
    per_problem: list[bool] = field(default_factory=list)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--task", default="gsm-symbolic")
    parser.add_argument("--problems", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="which problems: the first N of the seeded shuffle")
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()

    problems = get_task(args.task).load(sample=args.problems, seed=args.seed)
    grader = Grader()
    ours, peer = Tally(), Tally()
    async with LlamaServer(args.model, slots=args.slots) as server, server.backend() as backend:
        engine = Engine({server.model: backend})
        arch = load_architecture("sample-8-vote", [server.model])
        generate = arch.layers[0][0].technique
        assert isinstance(generate, Generate)
        lm = OpenAICompatibleLanguageModel(
            endpoint=server.base_url, api_key="none", model_name=server.model,
            temperature=generate.temperature, max_tokens=generate.max_tokens, max_concurrency=args.slots,
        )  # fmt: skip
        self_consistency = SelfConsistency(hashes_projection)

        async def run_ours(problem):  # type: ignore[no-untyped-def]
            ctx = engine.context(use_cache=False)
            result = await arch.run(problem.input, ctx)
            text = result.answer.text if result.answer else ""
            return text, ctx.usage.completion_tokens, ctx.usage.calls

        async def run_peer(problem):  # type: ignore[no-untyped-def]
            result = await self_consistency.ainfer(lm, problem.input.prompt, generate.n, return_response_only=False)
            usage = result.usage or GenerationUsage()
            return result.the_one.get("content") or "", usage.completion_tokens, usage.num_calls

        for k, problem in enumerate(problems):
            order = [(ours, run_ours), (peer, run_peer)]
            for tally, run in order if k % 2 == 0 else order[::-1]:
                before = server_metrics(server.base_url)
                started = time.perf_counter()
                text, completion, calls = await run(problem)
                tally.wall_s += time.perf_counter() - started
                after = server_metrics(server.base_url)
                verdict = await grader.grade(problem, extract(problem.input, text))
                tally.correct += verdict.passed
                tally.per_problem.append(verdict.passed)
                tally.reported_completion += completion
                tally.calls += calls
                tally.server_completion += int(
                    after["llamacpp:tokens_predicted_total"] - before["llamacpp:tokens_predicted_total"]
                )
            print(f"{problem.id}: thinktank {ours.per_problem[-1]}, its_hub {peer.per_problem[-1]}", flush=True)
        await lm.close()

    n = len(problems)
    print(f"\nmodel={args.model} task={args.task} problems={n} (seed {args.seed}) slots={args.slots}, 8 samples per query")
    for name, t in (("thinktank sample-8-vote", ours), ("its_hub SelfConsistency", peer)):
        print(
            f"{name:26s} accuracy {t.correct}/{n}  wall {t.wall_s:.1f}s ({t.wall_s / n:.1f} s/query)  calls {t.calls}  "
            f"completion tokens reported {t.reported_completion} / server {t.server_completion}"
        )
    both = sum(a and b for a, b in zip(ours.per_problem, peer.per_problem, strict=True))
    print(f"wall-time ratio thinktank/its_hub: {ours.wall_s / peer.wall_s:.2f}; both right on {both}")


if __name__ == "__main__":
    asyncio.run(main())
