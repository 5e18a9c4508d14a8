"""`retrieve`: the top-k passages of a corpus for the task's prompt, one candidate per passage.

    Retrieve(k=5)                                             # BM25 over the task's corpus
    Retrieve(k=8, mode="hybrid", embedding_model="e5-small")  # BM25 and dense, fused by reciprocal rank

It replaces the incoming candidates: each passage becomes a candidate (text = the passage, answer None,
`passage` set with its score), best first. `order="corpus"` keeps the top k in corpus order instead,
for benchmarks that control where the relevant passage sits. The index is built once per run and kept
in the cache (see `thinktank.retrieval`); the search is a "retrieve" node in the trace.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from thinktank.engine.engine import Context
from thinktank.retrieval import Mode, RetrievalError, Retrievers, recall_at_k
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, Technique

__all__ = ["Retrieve", "recall_at_k"]


class Retrieve(Technique):
    name = "retrieve"

    def __init__(
        self,
        *,
        k: Annotated[int, Field(ge=1, le=1000)] = 5,
        corpus: str | None = None,
        mode: Mode = "bm25",
        embedding_model: str | None = None,
        order: Literal["score", "corpus"] = "score",
    ) -> None:
        """`corpus`: a directory of .txt/.md files or a passages JSONL; default: the task's own corpus."""
        if mode != "bm25" and not embedding_model:
            raise ValueError(f"retrieve with mode={mode!r} needs an embedding_model")
        self.k, self.corpus, self.mode, self.embedding_model, self.order = k, corpus, mode, embedding_model, order

    async def apply(self, ctx: Context, task: TaskInput, candidates: list[Candidate]) -> list[Candidate]:
        corpus = self.corpus or task.corpus
        if not corpus:
            raise RetrievalError("retrieve needs a corpus: set `corpus:` on the node, or use a task whose problems have one")
        retrievers = ctx.resources.get(Retrievers)
        passages = await retrievers.search(
            ctx, corpus, task.prompt, k=self.k, mode=self.mode, embedding_model=self.embedding_model
        )
        if self.order == "corpus":
            index = await retrievers.index(corpus)
            position = {p.id: i for i, p in enumerate(index.passages)}
            passages.sort(key=lambda p: position[p.id])
        model = self.embedding_model or "bm25"
        return [Candidate(p.text, None, model, self.name, scores={self.name: p.score}, passage=p) for p in passages]
