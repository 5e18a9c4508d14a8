"""`critique`: a critic lists concrete problems, then the model rewrites (Self-Refine, Madaan et al. 2023; Archon's critic).

    CritiqueRefine(model="qwen2.5-coder-1.5b-instruct", rounds=2, top_k=2)

Each of the first `top_k` distinct candidates goes through `rounds` of critique -> refine,
the candidates concurrently (rounds of one candidate are sequential by nature). As in
Self-Refine, a candidate stops early when the critic finds no problems; a refinement with
no extractable answer is dropped and the previous answer kept. Refined candidates come
first, with the critiques in `verdicts[name]`, followed by the untouched rest.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from thinktank._aio import gather_all
from thinktank.engine.engine import Context
from thinktank.tasks.answers import extract
from thinktank.tasks.base import TaskInput
from thinktank.techniques._prompting import clip, distinct_groups, format_instruction, judge_request, show
from thinktank.techniques.base import Candidate, MaxTokens, Technique, Temperature
from thinktank.usage import Usage
from thinktank.verifiers.base import Verdict

OK_MARK = "NO PROBLEMS"

CRITIQUE = f"""Review the response to the task below. List its concrete problems (wrong logic, bugs, missed edge cases,
wrong final answer), each with how to fix it. Do not write a corrected response.
If the response is fully correct, reply exactly: {OK_MARK}

Task:
{{task}}

Response:
{{response}}"""

REFINE = """Improve the response to the task using the review. Fix every real problem the review lists and keep what is correct.

Task:
{task}

Response:
{response}

Review:
{critique}

Write the complete improved response. {format}"""

NOTE_CHARS = 1000  # critique text kept per round


def approves(critique: str) -> bool:
    """Whether the critic said the response has no problems (on its first or last line, as asked)."""
    lines = [re.sub(r"[^A-Z ]", "", line.upper()).strip() for line in critique.strip().splitlines() if line.strip()]
    return bool(lines) and (lines[0].startswith(OK_MARK) or lines[-1].startswith(OK_MARK))


class CritiqueRefine(Technique):
    name = "critique"

    def __init__(
        self,
        model: str,
        *,
        rounds: Annotated[int, Field(ge=1, le=8)] = 1,
        top_k: Annotated[int, Field(ge=1)] = 1,
        temperature: Temperature = 0.0,
        max_tokens: MaxTokens = 1024,
        stop_when_ok: bool = True,
        seed: int = 0,
        max_chars: Annotated[int, Field(ge=100)] = 3000,
    ) -> None:
        self.model, self.rounds, self.top_k, self.temperature, self.max_tokens = model, rounds, top_k, temperature, max_tokens
        self.stop_when_ok, self.seed, self.max_chars = stop_when_ok, seed, max_chars

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        if not candidates:
            ctx.node.notes["skipped"] = "no candidates"
            return []
        chosen = [g[0] for g in distinct_groups(task, candidates)[: self.top_k]]
        refined = await gather_all(self._refine(ctx.child(f"candidate{i}"), task, candidates[i], i) for i in chosen)
        ctx.node.notes.update(refined=chosen, stops=[c.verdicts[self.name]["details"]["stop"] for c in refined])
        return [*refined, *(c for i, c in enumerate(candidates) if i not in chosen)]

    async def _ask(self, ctx: Context, prompt: str) -> tuple[str, Usage, bool]:
        request = judge_request(self.model, prompt, temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed)
        (completion,) = await ctx.generate(request)
        return completion.text, completion.usage, completion.cached

    async def _refine(self, ctx: Context, task: TaskInput, original: Candidate, index: int) -> Candidate:
        current, critiques, refinements, approved = original, [], 0, False
        stop = f"ran all {self.rounds} round(s)"
        usage = Usage()
        for r in range(self.rounds):
            response = show(task, current, self.max_chars)
            critique, spent, _ = await self._ask(ctx.child(f"critique{r}"), CRITIQUE.format(task=task.prompt, response=response))
            usage += spent
            critiques.append(clip(critique, NOTE_CHARS))
            if self.stop_when_ok and approves(critique):
                approved, stop = True, f"round {r}: the critic found no problems"
                break
            prompt = REFINE.format(task=task.prompt, response=response, critique=critique, format=format_instruction(task))
            text, spent, cached = await self._ask(ctx.child(f"refine{r}"), prompt)
            usage += spent
            answer = extract(task, text)
            if answer is None and current.answer is not None:
                stop = f"round {r}: the refinement had no answer; kept the previous one"
                break
            current = Candidate(text, answer, self.model, self.name, cached=cached)
            refinements += 1
        reason = f"refined {refinements} time(s); " + ("the critic found no problems" if approved else stop)
        details = {"source": index, "critiques": critiques, "refinements": refinements, "stop": stop}
        if current is not original:
            current.usage = usage  # every critique and refine call spent on this chain
        current.verdicts[self.name] = Verdict(approved, reason, float(approved), details).to_dict()
        return current
