"""`verify_exec`: rank (or filter) candidates by running them against the task's public checks.

    VerifyExec(mode="filter", keep_at_least=1)

Execution feedback is the cheapest reliable signal there is (AlphaCode, Li et al. 2022, filters its
samples on the problem's example tests; so does CodeT's baseline). What the public checks are is the
task kind's (`TaskKind.public_check`): code runs its `public_tests` asserts in the sandbox, SQL must
execute without error and return rows, math has no public checks and passes through unchanged.
Identical answers run once; distinct ones run concurrently.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from thinktank._aio import gather_all
from thinktank.engine.engine import Context
from thinktank.kinds import kind_of
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, Technique
from thinktank.verifiers.base import Verdict


def has_public_checks(task: TaskInput) -> bool:
    """Whether `public_check` can say anything about this task's answers (the kind decides)."""
    return kind_of(task).has_public_checks(task)


async def public_check(ctx: Context, task: TaskInput, answer: str | None) -> Verdict:
    """Run one answer against the public checks only (never hidden ones). Call only when `has_public_checks`."""
    return await kind_of(task).public_check(ctx.resources, task, answer)


async def check_all(ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Verdict]:
    """One verdict per candidate; each distinct answer is executed once, all of them concurrently."""
    distinct = list(dict.fromkeys(c.answer for c in candidates))
    verdicts = dict(zip(distinct, await gather_all(public_check(ctx, task, a) for a in distinct), strict=True))
    return [verdicts[c.answer] for c in candidates]


class VerifyExec(Technique):
    name = "verify_exec"

    def __init__(self, *, mode: Literal["filter", "score"] = "score", keep_at_least: Annotated[int, Field(ge=1)] = 1) -> None:
        self.mode, self.keep_at_least = mode, keep_at_least

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        notes = ctx.node.notes
        if not has_public_checks(task):
            notes["skipped"] = f"no public checks for a {task.kind} task; candidates pass through unchanged"
            return candidates
        verdicts = await check_all(ctx, task, candidates)
        for candidate, verdict in zip(candidates, verdicts, strict=True):
            candidate.scores[self.name] = verdict.score
            candidate.verdicts[self.name] = verdict.to_dict()
        order = sorted(range(len(candidates)), key=lambda i: -verdicts[i].score)  # stable: ties keep their order
        if self.mode == "filter":
            passing = [i for i in order if verdicts[i].passed]
            order = passing if len(passing) >= self.keep_at_least else order[: self.keep_at_least]
        notes.update(
            scores=[round(v.score, 4) for v in verdicts],
            passed=sum(v.passed for v in verdicts),
            distinct_answers=len({c.answer for c in candidates}),
            order=order,
            dropped=len(candidates) - len(order),
        )
        return [candidates[i] for i in order]
