"""`repair`: show the model why its answer fails the public checks and let it fix it, a few rounds.

    Repair(model="qwen2.5-coder-0.5b-instruct", rounds=3, top_k=1)

Self-Debugging (Chen et al. 2023, "Teaching Large Language Models to Self-Debug") and Reflexion
(Shinn et al. 2023): concrete execution feedback — the failing assert, what the function actually
returned, the traceback tail, or the SQLite error — lets even a small model fix its own mistake.
The first `top_k` distinct failing candidates are repaired in parallel; each round sees only the
latest attempt and its feedback, and a candidate stops as soon as it passes. Candidates that
already pass cost no call. Math has no public checks, so it passes through unchanged.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from thinktank._aio import gather_all
from thinktank.engine.engine import Context
from thinktank.kinds import kind_of
from thinktank.tasks.answers import extract
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, MaxTokens, Technique, Temperature
from thinktank.techniques.verify_exec import check_all, has_public_checks, public_check
from thinktank.types import GenerationRequest
from thinktank.usage import Usage
from thinktank.verifiers.base import Verdict

PROMPT = """{prompt}

Your previous answer:
```{lang}
{answer}
```
{feedback}

Find the mistake and fix it. Reply with the complete corrected {what} in a single ```{lang} code block."""


async def feedback(ctx: Context, task: TaskInput, answer: str | None, verdict: Verdict) -> str:
    """What went wrong, as concretely as the checks can say it (the kind's `feedback`, else the verdict's reason)."""
    said = await kind_of(task).feedback(ctx.resources, task, answer, verdict)
    return said or f"Checking it gave: {verdict.reason}"


class Repair(Technique):
    name = "repair"

    def __init__(
        self,
        model: str,
        *,
        rounds: Annotated[int, Field(ge=1, le=10)] = 3,
        temperature: Temperature = 0.2,
        max_tokens: MaxTokens = 768,
        top_k: Annotated[int, Field(ge=1, le=64)] = 1,
        seed: int = 0,
    ) -> None:
        self.model, self.rounds, self.temperature, self.max_tokens, self.top_k = model, rounds, temperature, max_tokens, top_k
        self.seed = seed

    def prompt(self, task: TaskInput, candidate_answer: str | None, text: str, feedback_text: str) -> str:
        lang, what = kind_of(task).repair_terms
        shown = candidate_answer if candidate_answer is not None else text.strip()[-1500:]
        return PROMPT.format(prompt=task.prompt, lang=lang, answer=shown, feedback=feedback_text, what=what)

    async def repair_one(self, ctx: Context, task: TaskInput, start: Candidate, verdict: Verdict) -> tuple[Candidate, Verdict]:
        """Up to `rounds` attempts, each on the latest one; returns the best attempt (ties: the later one)."""
        best, best_verdict, current, usage = start, verdict, start, Usage()
        ctx.node.notes["stop"] = f"still failing after {self.rounds} rounds"
        ctx.node.notes["start"] = start.answer  # with each round's `answer`: the rounds as diffs (`thinktank ui`)
        for r in range(1, self.rounds + 1):
            round_ctx = ctx.child(f"round{r}")
            said = await feedback(round_ctx, task, current.answer, verdict)
            content = self.prompt(task, current.answer, current.text, said)
            request = GenerationRequest([{"role": "user", "content": content}], self.model, temperature=self.temperature,
                                        max_tokens=self.max_tokens, seed=self.seed + r)  # fmt: skip
            (completion,) = await round_ctx.generate(request)
            usage += completion.usage
            current = Candidate(completion.text, extract(task, completion.text), self.model, self.name, cached=completion.cached)
            verdict = await public_check(round_ctx, task, current.answer)
            round_ctx.node.notes.update(
                answer=current.answer, feedback=said, passed=verdict.passed, score=verdict.score, reason=verdict.reason
            )
            if verdict.score >= best_verdict.score:
                best, best_verdict = current, verdict
            if verdict.passed:
                ctx.node.notes["stop"] = f"passed in round {r}"
                break
        if best is not start:
            best.usage = usage  # every repair call made for this candidate
        return best, best_verdict

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        if not has_public_checks(task):
            ctx.node.notes["skipped"] = f"no public checks for a {task.kind} task; candidates pass through unchanged"
            return candidates
        verdicts = await check_all(ctx, task, candidates)
        chosen: dict[str | None, int] = {}
        for i, (c, v) in enumerate(zip(candidates, verdicts, strict=True)):
            if not v.passed and c.answer not in chosen and len(chosen) < self.top_k:
                chosen[c.answer] = i
        repaired = await gather_all(
            self.repair_one(ctx.child(f"candidate{i}"), task, candidates[i], verdicts[i]) for i in chosen.values()
        )
        result, final = list(candidates), list(verdicts)
        for i, (candidate, verdict) in zip(chosen.values(), repaired, strict=True):
            result[i], final[i] = candidate, verdict
        for candidate, verdict in zip(result, final, strict=True):
            candidate.scores[self.name] = verdict.score
            candidate.verdicts[self.name] = verdict.to_dict()
        targets = set(chosen.values())
        order = sorted(range(len(result)), key=lambda i: (-final[i].score, i not in targets))  # stable otherwise
        ctx.node.notes.update(
            repaired=sorted(targets),
            fixed=[i for i in sorted(targets) if final[i].passed],
            order=order,
            already_passing=sum(v.passed for v in verdicts),
        )
        return [result[i] for i in order]
