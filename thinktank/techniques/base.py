"""The one contract every technique follows, and the candidate it passes along.

A technique takes the query's context, the task input (prompt + public checks only)
and the candidates so far, and returns candidates: generators add them, selectors
(vote, rank, verify) score and reorder them, fusers replace them. The first candidate
of the last layer is the answer.

    class MyTechnique(Technique):
        async def apply(self, ctx, task, candidates):
            return sorted(candidates, key=...)
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from thinktank.engine.engine import Context
from thinktank.problems import Passage
from thinktank.tasks.base import TaskInput
from thinktank.usage import Usage

#: parameter types shared by technique constructors (the constructor signature is the YAML schema)
Temperature = Annotated[float, Field(ge=0, le=2)]
MaxTokens = Annotated[int, Field(ge=1, le=32768)]
TopP = Annotated[float, Field(gt=0, le=1)]
Samples = Annotated[int, Field(ge=1, le=256)]  # how many samples a node draws


@dataclass
class Candidate:
    text: str  # what the model wrote
    answer: str | None  # the artefact extracted from it: a program, a SQL query, a final answer
    model: str
    node: str  # the node that produced it
    usage: Usage = field(default_factory=Usage)
    scores: dict[str, float] = field(default_factory=dict)  # by node name
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # by node name, Verdict.to_dict()
    cached: bool = False
    passage: Passage | None = None  # set on the candidates a retrieval step yields: one per passage, answer None
    program: str | None = None  # set by `program`: the code that ran; `answer` is then the value it returned

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "answer": self.answer,
            "model": self.model,
            "node": self.node,
            "usage": self.usage.to_dict(),
            "scores": self.scores,
            "verdicts": self.verdicts,
            "cached": self.cached,
            **({"passage": dataclasses.asdict(self.passage)} if self.passage else {}),
            **({"program": self.program} if self.program is not None else {}),
        }


class Technique(ABC):
    #: the node's name in traces and scores; set by the architecture builder
    name: str = "technique"

    @abstractmethod
    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        """Return the candidates after this step, best first where the step ranks."""
