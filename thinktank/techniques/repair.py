"""`repair`: show the model why its answer fails the public checks and let it fix it, a few rounds.

    Repair(model="qwen2.5-coder-0.5b-instruct", rounds=3, top_k=1)

Self-Debugging (Chen et al. 2023, "Teaching Large Language Models to Self-Debug") and Reflexion
(Shinn et al. 2023): concrete execution feedback — the failing assert, what the function actually
returned, the traceback tail, or the SQLite error — lets even a small model fix its own mistake.
The first `top_k` distinct failing candidates are repaired in parallel; each round sees only the
latest attempt and its feedback, and a candidate stops as soon as it passes. Candidates that
already pass cost no call.

A `program` candidate (math by program, `techniques/program.py`) is checked by its program's verdict instead: one
that raised, never returned, printed instead of returning or returned no number is repaired with that verdict (the
exception and traceback, or what it returned or printed) as the feedback, and each attempt's program runs in the
sandbox to give the next candidate its value. Other candidates of a task without public checks (math prose) are
left as they are, after the checked ones; with no program candidate there, the step passes everything through.
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
from thinktank.techniques.program import ENTRY, read_program, run_program
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


#: (block language, noun) of the repair prompt for a `program` candidate
PROGRAM_TERMS = ("python", f"program (a function `{ENTRY}()` that returns the answer as a number)")


async def feedback(ctx: Context, task: TaskInput, answer: str | None, verdict: Verdict) -> str:
    """What went wrong, as concretely as the checks can say it (the kind's `feedback`, else the verdict's reason)."""
    said = await kind_of(task).feedback(ctx.resources, task, answer, verdict)
    return said or f"Checking it gave: {verdict.reason}"


def program_feedback(verdict: Verdict) -> str:
    """Running the program gave: the verdict's reason, and the traceback of an exception."""
    trace = verdict.details.get("traceback") or ""
    return f"Running it gave: {verdict.reason}" + (f"\nTraceback (most recent call last):\n{trace[-600:]}" if trace else "")


async def program_verdict(ctx: Context, candidate: Candidate) -> Verdict:
    """The verdict `program` gave this candidate (kept in `verdicts[candidate.node]`), else its program run now."""
    kept = candidate.verdicts.get(candidate.node)
    if kept is not None and "status" in kept.get("details", {}):
        return Verdict(kept["passed"], kept["reason"], kept["score"], dict(kept["details"]), kept.get("duration_s", 0.0))
    return await run_program(ctx, candidate.program or "")


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

    def prompt(
        self, task: TaskInput, candidate_answer: str | None, text: str, feedback_text: str, *, program: bool = False
    ) -> str:
        lang, what = PROGRAM_TERMS if program else kind_of(task).repair_terms
        shown = candidate_answer if candidate_answer else text.strip()[-1500:]
        return PROMPT.format(prompt=task.prompt, lang=lang, answer=shown, feedback=feedback_text, what=what)

    async def attempt(self, ctx: Context, task: TaskInput, program: bool, text: str, cached: bool) -> tuple[Candidate, Verdict]:
        """The candidate a repair reply stands for, and its verdict (its program's, or the public checks')."""
        if program:
            code = read_program(text)
            verdict = await run_program(ctx, code)
            answer = verdict.details["value"] if verdict.passed else None
            return Candidate(text, answer, self.model, self.name, cached=cached, program=code), verdict
        candidate = Candidate(text, extract(task, text), self.model, self.name, cached=cached)
        return candidate, await public_check(ctx, task, candidate.answer)

    async def repair_one(self, ctx: Context, task: TaskInput, start: Candidate, verdict: Verdict) -> tuple[Candidate, Verdict]:
        """Up to `rounds` attempts, each on the latest one; returns the best attempt (ties: the later one)."""
        best, best_verdict, current, usage = start, verdict, start, Usage()
        program = start.program is not None
        ctx.node.notes["stop"] = f"still failing after {self.rounds} rounds"
        ctx.node.notes["start"] = start.program if program else start.answer  # with each round's: the rounds as diffs
        for r in range(1, self.rounds + 1):
            round_ctx = ctx.child(f"round{r}")
            said = program_feedback(verdict) if program else await feedback(round_ctx, task, current.answer, verdict)
            shown = current.program if program else current.answer
            content = self.prompt(task, shown, current.text, said, program=program)
            request = GenerationRequest([{"role": "user", "content": content}], self.model, temperature=self.temperature,
                                        max_tokens=self.max_tokens, seed=self.seed + r)  # fmt: skip
            (completion,) = await round_ctx.generate(request)
            usage += completion.usage
            current, verdict = await self.attempt(round_ctx, task, program, completion.text, completion.cached)
            round_ctx.node.notes.update(
                answer=current.program if program else current.answer,
                feedback=said, passed=verdict.passed, score=verdict.score, reason=verdict.reason,
            )  # fmt: skip
            if verdict.score >= best_verdict.score:
                best, best_verdict = current, verdict
            if verdict.passed:
                ctx.node.notes["stop"] = f"passed in round {r}"
                break
        if best is not start:
            best.usage = usage  # every repair call made for this candidate
        return best, best_verdict

    async def check(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Verdict | None]:
        """A verdict per candidate: its program's, or the public checks'; None where there is nothing to check."""
        public = has_public_checks(task)
        plain = [c for c in candidates if c.program is None]
        checked = iter(await check_all(ctx, task, plain) if public else [])
        kept = iter(await gather_all(program_verdict(ctx, c) for c in candidates if c.program is not None))
        return [next(kept) if c.program is not None else next(checked) if public else None for c in candidates]

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        if not has_public_checks(task) and all(c.program is None for c in candidates):
            ctx.node.notes["skipped"] = f"no public checks for a {task.kind} task; candidates pass through unchanged"
            return candidates
        verdicts = await self.check(ctx, task, candidates)
        chosen: dict[str | None, tuple[int, Verdict]] = {}
        for i, (c, v) in enumerate(zip(candidates, verdicts, strict=True)):
            key = c.program if c.program is not None else c.answer
            if v is not None and not v.passed and key not in chosen and len(chosen) < self.top_k:
                chosen[key] = (i, v)
        repaired = await gather_all(
            self.repair_one(ctx.child(f"candidate{i}"), task, candidates[i], v) for i, v in chosen.values()
        )
        result, final = list(candidates), list(verdicts)
        for (i, _), (fixed, fixed_verdict) in zip(chosen.values(), repaired, strict=True):
            result[i], final[i] = fixed, fixed_verdict
        for candidate, checked in zip(result, final, strict=True):
            if checked is not None:
                candidate.scores[self.name] = checked.score
                candidate.verdicts[self.name] = checked.to_dict()
        targets = {i for i, _ in chosen.values()}

        def rank(i: int) -> tuple[bool, float, bool]:
            verdict = final[i]
            return verdict is None, -(verdict.score if verdict else 0.0), i not in targets

        order = sorted(range(len(result)), key=rank)  # stable otherwise; unchecked candidates last
        ctx.node.notes.update(
            repaired=sorted(targets),
            fixed=[i for i in sorted(targets) if (v := final[i]) is not None and v.passed],
            order=order,
            already_passing=sum(v is not None and v.passed for v in verdicts),
        )
        return [result[i] for i in order]
