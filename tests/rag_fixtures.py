"""Retrieval-QA test material shared by the read / permute / rerank tests: passages, a stand-in retriever.

`KIND` is the kind the tests ask questions in: free text until the `qa` kind is merged, then "qa" (one line).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from thinktank.arch import build_architecture
from thinktank.problems import Passage
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, Technique

KIND = "qa"
TASK = TaskInput("rag/1", KIND, "Where was Zorvan Peltrix born?")
PASSAGES = [
    Passage("p0", "(p0) Zorvan Peltrix was born in Quillmarsh.", "Zorvan Peltrix"),
    Passage("p1", "(p1) Zorvan Peltra was born in Dunmere."),
    Passage("p2", "(p2) The Peltrix family later moved to Osterby."),
    Passage("p3", "(p3) Quillmarsh is a river town."),
    Passage("p4", "(p4) Zorvan is a common given name."),
]


def passage_candidates(passages: list[Passage] = PASSAGES) -> list[Candidate]:
    """What a retrieval step yields: one candidate per passage, best first, answer None."""
    return [Candidate(p.text, None, "", "retrieve", passage=p) for p in passages]


def shown_order(prompt: str) -> list[str]:
    """The passage ids in the order a prompt shows them (each passage's text carries its id in parentheses)."""
    return re.findall(r"\((p\d+)\)", prompt)


def prompt_of(request) -> str:
    return request.messages[-1]["content"]


class GivenPassages(Technique):
    """Stand-in for `retrieve` until the retrieval branch is merged: the fixed passages, the first k."""

    def __init__(self, k: int = 5, corpus: str | None = None) -> None:
        self.k = k

    async def apply(self, ctx, task, candidates):
        return passage_candidates(PASSAGES[: self.k])


def preset_with_given_passages(name: str, models: list[str]):
    """A rag preset built with its `retrieve` node swapped for `GivenPassages` (same k), other layers as shipped."""
    text = (Path(__file__).parents[1] / "thinktank" / "presets" / f"{name}.yaml").read_text()
    spec = yaml.safe_load(text)
    layers = []
    for layer in spec["layers"]:
        ((technique, params),) = layer.items()
        layers.append({"rag_fixtures:GivenPassages": params} if technique == "retrieve" else layer)
    return build_architecture({**spec, "layers": layers}, models)


class CorpusTaggedPassages(GivenPassages):
    """Like `GivenPassages`, with each id prefixed by the task's corpus directory name: shows the corpus arrived."""

    async def apply(self, ctx, task, candidates):
        if task.corpus is None:
            return []
        tag = Path(task.corpus).name
        return [Candidate(p.text, None, "", "retrieve", passage=Passage(f"{tag}/{p.id}", p.text)) for p in PASSAGES[: self.k]]
