"""its_hub on thinktank's llama-server: `self_consistency` and `best_of_n` (its LLM judge), budget `--samples`.

Runs in its_hub's own venv (see `_driver_io.py` for the protocol). Voting needs a projection from a reply to the
thing voted on; its_hub's default is the whole stripped text, so this uses what a user would write for these
prompts: the text after the last "####" for math, the last fenced block (whitespace collapsed) for code and SQL.
The judge is the same model through its own client at temperature 0 with its_hub's default prompt and JSON schema.
"""

from __future__ import annotations

import asyncio
import re
import threading
from importlib.metadata import version
from typing import Any

from _driver_io import common_args, refuse, serve

APPROACHES = ("self_consistency", "best_of_n")
_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_HASHES = re.compile(r"####\s*(.+)")


def projection_for(kind: str):  # type: ignore[no-untyped-def]
    def project(text: str) -> str:
        if kind == "math":
            found = _HASHES.findall(text)
            return found[-1].strip() if found else text.strip()
        blocks = _FENCE.findall(text)
        return " ".join((blocks[-1] if blocks else text).split())

    return project


def main() -> None:
    args = common_args(__doc__ or "").parse_args()
    if args.approach not in APPROACHES:
        refuse("its_hub", f"unknown its_hub approach {args.approach!r}; known: {', '.join(APPROACHES)}")
    try:
        from its_hub.core.algorithms.bon import BestOfN
        from its_hub.core.algorithms.self_consistency import SelfConsistency
        from its_hub.core.lms.openai_lm import OpenAICompatibleLanguageModel
        from its_hub.core.reward_models.llm_judge import LLMJudge
    except ImportError as exc:
        refuse("its_hub", f"its_hub cannot be imported: {exc}")

    # its_hub's client (aiohttp) gives up on a reply after aiohttp's default 300 s and retries it, and it has no
    # setting for that; on a loaded CPU server one 512-token reply can take longer, so the limit is raised here
    import aiohttp.client

    aiohttp.client.DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=3600, sock_connect=30)

    def lm(temperature: float) -> Any:
        return OpenAICompatibleLanguageModel(
            endpoint=args.base_url, api_key="none", model_name=args.model, temperature=temperature,
            max_completion_tokens=args.max_tokens, max_concurrency=args.samples,
        )  # fmt: skip

    settings: dict[str, Any] = {"budget": args.samples, "temperature": args.temperature, "max_tokens": args.max_tokens,
                                "http timeout": "3600 s (aiohttp's 300 s default raised)"}  # fmt: skip
    if args.approach == "best_of_n":
        settings["judge"] = "LLMJudge, same model, temperature 0, default prompt and JSON schema"
    else:
        settings["projection"] = "math: after the last ####; code/sql: last fenced block"

    # one event loop in one thread for every problem: its_hub is async, the protocol's pool is threads
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    sampler, judge_lm = lm(args.temperature), lm(0.0)

    def solve(task: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if args.approach == "best_of_n":
            algorithm: Any = BestOfN(LLMJudge(judge_lm))
        else:
            algorithm = SelfConsistency(projection_for(task["kind"]))
        run = algorithm.ainfer(sampler, task["prompt"], args.samples, return_response_only=False)
        result = asyncio.run_coroutine_threadsafe(run, loop).result()
        usage = result.usage
        reported = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                    "calls": usage.num_calls} if usage is not None else {}  # fmt: skip
        return result.the_one.get("content") or "", reported

    serve("its_hub", version("its_hub"), args.approach, settings, solve, args.concurrency)


if __name__ == "__main__":
    main()
