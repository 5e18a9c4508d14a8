"""DSPy at its best on these tasks: `BestOfN` or `Refine` around `Predict("question -> answer")`, rewarded by
thinktank's public checks.

Runs in DSPy's own venv (see `_driver_io.py` for the protocol). The reward is the best a DSPy user has here: the
answer run against the task's public checks (the docstring's asserts for code, "runs and returns rows" for SQL;
for math, which has none, whether an answer was given at all), computed by thinktank's sandbox through
`--checker` (a subprocess of thinktank's venv: the peer's generated code never runs outside the sandbox).
DSPy picks its own temperature: every attempt of `BestOfN` / `Refine` runs at 1.0 (its source); the first
passing attempt (reward 1.0) stops the loop, else the best of `--samples` attempts is kept. DSPy's cache is off,
so every attempt reaches the server.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
from importlib.metadata import version
from typing import Any

from _driver_io import common_args, refuse, serve

APPROACHES = ("best_of_n", "refine")


class Checker:
    """One long-lived public-check service; one request at a time (DSPy's attempts are sequential anyway)."""

    def __init__(self, command: str) -> None:
        self.proc = subprocess.Popen(shlex.split(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lock = threading.Lock()

    def __call__(self, task: dict[str, Any], text: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            self.proc.stdin.write(json.dumps({"task": task, "text": text}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the public-check service exited (code {self.proc.poll()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(30)


def main() -> None:
    args = common_args(__doc__ or "").parse_args()
    if args.approach not in APPROACHES:
        refuse("dspy", f"unknown DSPy approach {args.approach!r}; known: {', '.join(APPROACHES)}")
    if not args.checker:
        refuse("dspy", "DSPy's reward needs --checker (thinktank's public-check service)")
    try:
        import dspy
    except ImportError as exc:
        refuse("dspy", f"dspy cannot be imported in {sys.prefix}: {exc}")

    lm = dspy.LM(f"openai/{args.model}", api_base=args.base_url, api_key="none", temperature=args.temperature,
                 max_tokens=args.max_tokens, cache=False, num_retries=0)  # fmt: skip
    dspy.configure(lm=lm)  # Refine's feedback step uses the configured LM
    checker = Checker(args.checker)
    wrapper = dspy.BestOfN if args.approach == "best_of_n" else dspy.Refine
    settings = {"module": 'Predict("question -> answer"), ChatAdapter', "N": args.samples, "threshold": 1.0,
                "temperature": "1.0 on every attempt (DSPy's choice)", "max_tokens": args.max_tokens,
                "reward": "thinktank public checks (sandboxed); math: an answer was given"}  # fmt: skip

    def solve(task: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        checks: list[dict[str, Any]] = []

        def reward(kwargs: dict[str, Any], pred: Any) -> float:
            verdict = checker(task, str(getattr(pred, "answer", "") or ""))
            checks.append(verdict)
            return float(verdict["score"]) if verdict["passed"] else min(float(verdict["score"]), 0.99)

        program = wrapper(module=dspy.Predict("question -> answer"), N=args.samples, reward_fn=reward, threshold=1.0)
        pred = program(question=task["prompt"])
        answer = str(getattr(pred, "answer", "") or "") if pred is not None else ""
        return answer, {"attempts": len(checks), "public_passed": any(c["passed"] for c in checks)}

    try:
        serve("dspy", version("dspy"), args.approach, settings, solve, args.concurrency)
    finally:
        checker.close()


if __name__ == "__main__":
    main()
