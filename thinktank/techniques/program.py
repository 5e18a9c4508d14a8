"""`program`: program-aided reasoning for math: the model writes a program, the sandbox computes the answer.

    layers:
      - program: {n: 8, temperature: 0.8}
      - vote: {}

PAL (Gao et al. 2022, arXiv:2211.10435) and Program of Thoughts (Chen et al. 2022, arXiv:2211.12588): a model that is
weak at arithmetic in prose writes `def solution():` computing the answer, and the Python sandbox
(`verifiers/python_sandbox.py`; generated code never runs in this process) runs it. Each distinct program runs once,
all of them concurrently. A candidate's `program` is the code and its `answer` the value the program returned,
written as a number ("42", "12.5", "3/4"), so `vote` groups samples by executed value (the math kind's equivalence)
and prose answers of a `generate` node in the same layer vote alongside them (the mixed presets).

A program that does not return a number gives a candidate with no answer (it casts no vote) and a readable verdict in
`verdicts[name]`, whose `details["status"]` says what happened: `no_program` (no program defining solution()),
`raised` (the exception and the traceback), `timeout` (it never returned), `printed` (it printed the answer instead of
returning it), `non_number` (it returned a str, a list, None...). `repair` takes such candidates and feeds the verdict
back.

`check_text: true` is code-based self-verification (Zhou et al. 2023, arXiv:2308.07921): the reply first solves the
problem in words, ending in "#### <answer>", then writes the program. When the two disagree the sample abstains (no
answer; both values stay in the verdict), so disagreement lowers `cascade`'s vote share and holds back `adaptive`'s
stop. A reply whose prose gives no answer keeps its program's value, at score 0.5 instead of 1.0.

`program` has `draw`, so it can also be `adaptive`'s generator:

    - adaptive: {max_n: 8, wave: 2, generator: [{layers: [{program: {temperature: 0.8}}]}]}
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence

from thinktank._aio import gather_all
from thinktank.engine.engine import Context
from thinktank.kinds.base import clip
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, MaxTokens, Samples, Technique, Temperature, TopP
from thinktank.techniques.generate import Generate
from thinktank.types import Message
from thinktank.verifiers.base import Verdict
from thinktank.verifiers.math import answers_equivalent, extract_answer
from thinktank.verifiers.values import number_text

__all__ = ["ENTRY", "Program", "read_program", "run_program", "run_programs", "self_check"]

ENTRY = "solution"
_DEFINES = re.compile(rf"^\s*def\s+{ENTRY}\s*\(", re.MULTILINE)
_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_MARKED = re.compile(r"####|\\boxed|\banswer\**\s*(?:is\b|:|=)", re.IGNORECASE)  # prose stating an answer, not just numbers

# No worked example with numbers: a 0.5B model copied one (its quantities, even its answer) into every problem
_PROGRAM = """Write a Python function `solution()` that takes no arguments, computes the answer step by step with \
one variable per quantity given in this problem, and returns the answer as a number. Do not print it. Put the \
program in one ```python block:
```python
def solution():
    ...
    return answer
```"""
INSTRUCTION = "Answer with a program instead of doing the arithmetic in words. " + _PROGRAM
CHECKED_INSTRUCTION = (
    'First solve the problem briefly in words and write your answer on a line "#### <answer>". '
    "Then check it with a program. " + _PROGRAM
)


def read_program(text: str) -> str:
    """The program in a reply (the fenced block defining solution(), as `code` tasks read one); "" when there is none."""
    from thinktank.kinds.code import extract_code  # here: `repair` imports this module, and math runs need no sandbox

    if "```" not in text and not _DEFINES.search(text):
        return ""
    return extract_code(text, ENTRY, "").strip() + "\n"


async def run_program(ctx: Context, program: str) -> Verdict:
    """Run `program` in the sandbox and call solution(): passed with `details["value"]` when it returned a number."""
    if not program.strip():
        return Verdict(False, "no program in the reply (a ```python block defining solution())", 0.0, {"status": "no_program"})
    if not _DEFINES.search(program):
        return Verdict(False, f"the program defines no function {ENTRY}()", 0.0, {"status": "no_program"})
    from thinktank.verifiers.python_sandbox import PythonSandbox  # here: see read_program

    call = await ctx.resources.get(PythonSandbox).call(program, ENTRY)
    details = {"status": call.status, "returned": call.out, "stdout": clip(call.stdout.strip(), 1000)}
    printed = clip(call.stdout.strip(), 200)
    if call.status == "ok" and call.out is not None:
        value, kind = number_text(call.out)
        if value is not None:
            return Verdict(True, f"{ENTRY}() returned {value}", 1.0, details | {"value": value}, call.duration_s)
        if call.out == "None" and printed:
            reason = f"{ENTRY}() printed {printed!r} but returned None: return the answer instead of printing it"
            return Verdict(False, reason, 0.0, details | {"status": "printed"}, call.duration_s)
        reason = f"{ENTRY}() returned {clip(call.out, 200)} ({kind}), not a number: return the answer as a number"
        return Verdict(False, reason, 0.0, details | {"status": "non_number"}, call.duration_s)
    if call.status == "error":
        details |= {"status": "raised", "traceback": call.traceback}
        return Verdict(False, f"the program raised {call.reason}", 0.0, details, call.duration_s)
    if call.status == "timeout":
        return Verdict(False, f"{ENTRY}() never returned ({call.reason})", 0.0, details, call.duration_s)
    return Verdict(False, f"the program was stopped: {call.reason}", 0.0, details, call.duration_s)


async def run_programs(ctx: Context, programs: Sequence[str]) -> list[Verdict]:
    """One verdict per program (each its own copy); each distinct program runs once, all of them concurrently."""
    distinct = list(dict.fromkeys(programs))
    ran = dict(zip(distinct, await gather_all(run_program(ctx, p) for p in distinct), strict=True))
    return [dataclasses.replace(ran[p], details=dict(ran[p].details)) for p in programs]


def self_check(verdict: Verdict, text: str) -> Verdict:
    """Code-based self-verification: does the answer the reply wrote in prose agree with its program's value?"""
    prose = _FENCED.sub("", text)
    written = extract_answer(prose) if _MARKED.search(prose) else None
    details = verdict.details | {"text_answer": written}
    value = verdict.details.get("value")
    if not verdict.passed or value is None:
        return dataclasses.replace(verdict, details=details)
    if written is None:
        reason = f"{verdict.reason}; the reasoning gives no answer to check it against"
        return dataclasses.replace(verdict, reason=reason, score=0.5, details=details | {"agrees": None})
    if answers_equivalent(written, value):
        return dataclasses.replace(verdict, reason=f"{verdict.reason}, as the reasoning says", details=details | {"agrees": True})
    reason = f"{ENTRY}() returned {value} but the reasoning says {written}: they disagree, so this sample casts no vote"
    return Verdict(False, reason, 0.0, details | {"agrees": False, "status": "disagrees"}, verdict.duration_s)


class Program(Technique):
    name = "program"

    def __init__(
        self,
        models: list[str],
        *,
        n: Samples = 1,
        temperature: Temperature = 0.0,
        top_p: TopP = 1.0,
        max_tokens: MaxTokens = 512,
        check_text: bool = False,
        instruction: str | None = None,
        system: str | None = None,
        seed: int = 0,
    ) -> None:
        """`check_text`: ask for prose first and abstain when it disagrees; `instruction` replaces the default one."""
        if not models:
            raise ValueError("program needs at least one model")
        self.models, self.n, self.check_text = models, n, check_text
        self.instruction = instruction or (CHECKED_INSTRUCTION if check_text else INSTRUCTION)
        # the samples are `generate`'s on the instructed prompt: same requests, seeds and cache keys
        self.generate = Generate(
            models, n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, system=system, seed=seed
        )

    def instructed(self, task: TaskInput) -> TaskInput:
        """`task` with the instruction to answer by a program appended to its prompt."""
        return dataclasses.replace(task, prompt=f"{task.prompt}\n\n{self.instruction}")

    def messages(self, task: TaskInput) -> list[Message]:
        return self.generate.messages(self.instructed(task))

    async def draw(self, ctx: Context, task: TaskInput, candidates: list[Candidate], start: int, count: int) -> list[Candidate]:
        """Samples start..start+count-1, dealt round-robin over the models (sample i of a model has seed seed + i)."""
        requests = self.generate.draws(self.instructed(task), start, count)
        batches = await gather_all(map(ctx.generate, requests))
        samples = [(r.model, c) for r, batch in zip(requests, batches, strict=True) for c in batch]
        programs = [read_program(c.text) for _, c in samples]
        verdicts = await run_programs(ctx, programs)
        if self.check_text:
            verdicts = [self_check(v, c.text) for v, (_, c) in zip(verdicts, samples, strict=True)]
        out = [
            Candidate(c.text, v.details["value"] if v.passed else None, model, self.name, c.usage,
                      {self.name: v.score}, {self.name: v.to_dict()}, c.cached, program=p)
            for (model, c), p, v in zip(samples, programs, verdicts, strict=True)
        ]  # fmt: skip
        statuses = Counter(str(v.details.get("status")) for v in verdicts)
        answered = sum(v.passed for v in verdicts)
        ctx.node.notes.update(statuses=dict(statuses), distinct_programs=len(set(programs)), answered=answered)
        return out

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        return await self.draw(ctx, task, candidates, 0, self.n * len(self.models))
