"""`fuse`: one model reads several candidates and writes one better answer (Archon's fuser; Mixture-of-Agents, Wang et al. 2024).

    Fuse(model="qwen2.5-coder-1.5b-instruct", n=1, max_candidates=4)

The prompt holds the task and up to `max_candidates` distinct candidates (in input order,
so put a `rank` first to fuse the best ones); the reply must follow the task's answer
format so the usual extraction applies. Fusion replaces: the fused candidates are the
output, and the trace notes which inputs went in. With a single distinct candidate there
is nothing to combine, so it is returned as is without a call.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from thinktank.engine.engine import Context
from thinktank.tasks.answers import extract
from thinktank.tasks.base import TaskInput
from thinktank.techniques._prompting import distinct_groups, format_instruction, judge_request, numbered
from thinktank.techniques.base import Candidate, MaxTokens, Technique, Temperature

FUSE = """Below are a task and {k} candidate responses to it from other assistants. Some may be wrong.
Check them critically and write one improved, correct response to the task: combine their strengths, fix their
mistakes, and do not mention the candidates.

Task:
{task}

Candidates:
{candidates}

{format}"""


class Fuse(Technique):
    name = "fuse"

    def __init__(
        self,
        model: str,
        *,
        n: Annotated[int, Field(ge=1, le=64)] = 1,
        temperature: Temperature = 0.0,
        max_tokens: MaxTokens = 1024,
        max_candidates: Annotated[int, Field(ge=2, le=64)] = 8,
        seed: int = 0,
        max_chars: Annotated[int, Field(ge=100)] = 3000,
    ) -> None:
        self.model, self.n, self.temperature, self.max_tokens = model, n, temperature, max_tokens
        self.max_candidates, self.seed, self.max_chars = max_candidates, seed, max_chars

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        notes = ctx.node.notes
        if not candidates:
            notes["skipped"] = "no candidates"
            return []
        groups = distinct_groups(task, candidates)
        inputs = [g[0] for g in groups[: self.max_candidates]]
        notes.update(inputs=inputs, distinct=len(groups), dropped=[g[0] for g in groups[self.max_candidates :]])
        if len(inputs) == 1:
            notes["skipped"] = "one distinct candidate: returned without fusing"
            return [candidates[inputs[0]]]
        prompt = FUSE.format(
            k=len(inputs),
            task=task.prompt,
            candidates=numbered(task, [candidates[i] for i in inputs], self.max_chars),
            format=format_instruction(task),
        )
        request = judge_request(
            self.model, prompt, temperature=self.temperature, max_tokens=self.max_tokens, n=self.n, seed=self.seed
        )
        fused = [
            Candidate(c.text, extract(task, c.text), self.model, self.name, c.usage, cached=c.cached)
            for c in await ctx.generate(request)
        ]
        notes["without_answer"] = sum(c.answer is None for c in fused)
        return sorted(fused, key=lambda c: c.answer is None)  # a fused reply with no extractable answer goes last
