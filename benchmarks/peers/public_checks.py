"""thinktank's public checks as a line service, for a peer's reward function (run with thinktank's Python).

    <thinktank venv>/bin/python benchmarks/peers/public_checks.py

Reads `{"task": <TaskInput as a dict>, "text": <a reply>}` lines on stdin and answers each with
`{"passed": bool, "score": float, "reason": str, "checked": bool}`: the reply's answer (extracted by the task's
kind) run against the *public* checks only — the asserts in the prompt's docstring in the sandbox for code, "runs
and returns rows" for SQL. A kind with no public checks (math) answers `checked: false` and scores 1.0 when an
answer can be extracted at all. A peer's generated code therefore runs only inside thinktank's sandbox.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from thinktank.engine.resources import Resources
from thinktank.kinds import kind_of
from thinktank.problems import TaskInput


def task_from_json(data: dict[str, Any]) -> TaskInput:
    return TaskInput(**{**data, "public_tests": tuple(data.get("public_tests") or ())})


async def check(resources: Resources, task: TaskInput, text: str) -> dict[str, Any]:
    kind = kind_of(task)
    answer = kind.extract(task, text)
    if not kind.has_public_checks(task):
        found = bool(answer and answer.strip())
        reason = "no public checks; an answer was found" if found else "no answer found in the reply"
        return {"passed": found, "score": 1.0 if found else 0.0, "reason": reason, "checked": False}
    verdict = await kind.public_check(resources, task, answer)
    return {"passed": verdict.passed, "score": verdict.score, "reason": verdict.reason, "checked": True}


async def main() -> None:
    resources = Resources()
    try:
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if not line.strip():
                continue
            request = json.loads(line)
            try:
                reply = await check(resources, task_from_json(request["task"]), request["text"])
            except Exception as exc:  # a failed check is a zero reward, reported with its reason
                reply = {"passed": False, "score": 0.0, "reason": f"{type(exc).__name__}: {exc}", "checked": False}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        await resources.aclose()


if __name__ == "__main__":
    asyncio.run(main())
