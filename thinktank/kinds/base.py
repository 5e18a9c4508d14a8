"""`TaskKind`: everything thinktank does differently for code, SQL, math or text, in one strategy object.

A kind reads answers out of replies, says when two answers are the same (the key `vote` groups by),
runs the public checks a technique may use, grades against the hidden checks, and tells a model (or a
judge) what an answer looks like. Techniques, the grader, the sample pool and the replay ask
`kind_of(task)` and never compare a kind's name, so a new kind is one module plus one line in
`thinktank.kinds.KINDS`.

The defaults here are those of free text: the whole reply is the answer, no public checks.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

from thinktank.problems import HiddenChecks, Problem, TaskInput
from thinktank.verifiers.base import Verdict

if TYPE_CHECKING:
    from thinktank.engine.resources import Resources

__all__ = ["Key", "Reply", "TaskKind", "clip", "text_key"]

Key = Hashable | None


class Reply(Protocol):
    """What a kind reads of a candidate: the model's reply and the answer extracted from it."""

    @property
    def text(self) -> str: ...

    @property
    def answer(self) -> str | None: ...


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was dropped (keeps prompts and notes bounded)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more chars]"


def text_key(answer: str | None) -> Key:
    """Free-text equality: lower-cased, whitespace collapsed; a JSON object or array by its canonical dump (case kept:
    a served tool call or JSON reply); no answer casts no vote."""
    if not answer or not answer.strip():
        return None
    stripped = answer.strip()
    if stripped[0] in "{[":
        try:
            return "json:" + json.dumps(json.loads(stripped), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        except ValueError:
            pass
    return re.sub(r"\s+", " ", stripped.lower())


class TaskKind(ABC):
    #: the name tasks carry in `TaskInput.kind`
    name: ClassVar[str]
    #: what a reply must look like so `extract` finds the answer ({entry_point} is filled in)
    answer_format: ClassVar[str] = "Give the final answer."
    #: the code-block language a judge sees the answer in; None: a judge reads the whole reply
    fence: ClassVar[str | None] = None
    #: what an answer is called in "no … found in the reply"
    artefact: ClassVar[str] = "answer"
    #: (block language, noun) of the repair prompt; repair runs only where there are public checks
    repair_terms: ClassVar[tuple[str, str]] = ("python", "function")
    #: the key depends on the answer alone and costs a run to compute, so callers may keep it per answer
    keyed_by_answer: ClassVar[bool] = False
    #: what a problem must carry for `grade` to mean anything: (field, why) — a `TaskInput` field, or "hidden.<field>"
    needs: ClassVar[tuple[tuple[str, str], ...]] = (("hidden.answer", ""),)
    #: the search space offers stages that run answers (exec_vote, repair, first_pass, generated tests) for this kind
    search_runs_answers: ClassVar[bool] = False
    #: why the search cannot replay this kind's samples one by one, or None when it can
    replay_obstacle: ClassVar[str | None] = None

    def extract(self, task: TaskInput, text: str) -> str | None:
        """The artefact a reply stands for (program, query, final answer); None when there is none."""
        return text.strip() or None

    def format_instruction(self, task: TaskInput) -> str:
        return self.answer_format.format(entry_point=task.entry_point or "the function")

    async def answer_keys(
        self, resources: Resources, task: TaskInput, candidates: Sequence[Reply], memo: dict[str, Key]
    ) -> list[Key]:
        """One key per candidate; equal keys mean equivalent answers (None: casts no vote).

        `memo` (answer -> key) is filled and read only by kinds whose keys are `keyed_by_answer`.
        """
        return [text_key(c.answer) for c in candidates]

    def show(self, candidate: Reply, limit: int) -> str:
        """What a judge reads: the answer in a `fence` block where the kind has one (what gets graded), else the reply."""
        if candidate.answer and self.fence:
            return f"```{self.fence}\n{clip(candidate.answer.strip(), limit)}\n```"
        return clip(candidate.text.strip(), limit)

    def distinct_key(self, candidate: Reply) -> str:
        """Candidates with equal keys stand for the same answer, so a judge looks at them once."""
        if candidate.answer is None:
            return "text:" + candidate.text.strip()
        return self.distinct_answer(candidate.answer)

    def distinct_answer(self, answer: str) -> str:
        return "answer:" + "\n".join(line.rstrip() for line in answer.strip().splitlines())

    def has_public_checks(self, task: TaskInput) -> bool:
        """Whether `public_check` can say anything about this task's answers."""
        return False

    def public_pass_is_final(self, task: TaskInput) -> bool:
        """Whether passing the public checks is trusted enough to stop sampling (adaptive's `first_pass`)."""
        return False

    def takes_unit_tests(self, task: TaskInput) -> bool:
        """Whether generated unit tests (gen_tests, CodeT) can run against this task's answers."""
        return False

    async def run_unit_tests(self, resources: Resources, task: TaskInput, answer: str, tests: Sequence[str]) -> Verdict:
        """Run generated asserts on one answer; `details["results"]` holds one bool per test. Only if `takes_unit_tests`."""
        raise NotImplementedError(f"{self.name} answers do not take unit tests")

    async def public_check(self, resources: Resources, task: TaskInput, answer: str | None) -> Verdict:
        """Run one answer against the public checks only (never hidden ones). Call only when `has_public_checks`."""
        if answer is None or not answer.strip():
            return Verdict(False, f"no {self.artefact} found in the reply", 0.0)
        return await self.run_public_checks(resources, task, answer)

    async def run_public_checks(self, resources: Resources, task: TaskInput, answer: str) -> Verdict:
        return Verdict(False, f"a {self.name} task has no public checks", 0.0)

    async def feedback(self, resources: Resources, task: TaskInput, answer: str | None, verdict: Verdict) -> str | None:
        """What went wrong, more concretely than the verdict's reason; None: the reason is all there is."""
        return None

    def lacks(self, task: TaskInput, hidden: HiddenChecks) -> str | None:
        """The first of `needs` a problem lacks (said for a user's task file), else None; hidden text must not be blank."""
        for field, why in self.needs:
            name = field.removeprefix("hidden.")
            value = getattr(hidden, name).strip() if name != field else getattr(task, field)
            if not value:
                return f"kind {self.name!r} needs {field!r}{why}"
        return None

    @abstractmethod
    async def grade(self, resources: Resources, problem: Problem, answer: str) -> Verdict:
        """Grade an extracted answer against the problem's hidden checks (grading only, never at inference)."""
