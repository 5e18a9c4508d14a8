"""The run's retrievers: one loaded index per corpus, shared by every query (a `Resources` entry).

    retrievers = ctx.resources.get(Retrievers)
    passages = await retrievers.search(ctx, "docs/", "what is BM25?", k=5, mode="hybrid", embedding_model="e5")

The first query of a corpus builds (or loads) its index, in a worker thread with a progress bar, while
concurrent queries of the same corpus wait for it; later queries reuse it. Each search is a "retrieve"
child node in the query's trace: its latency and passage ids in the notes, and, for dense and hybrid,
the embedding calls' usage (BM25 costs no tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from thinktank._paths import cache_dir
from thinktank.engine.engine import Context
from thinktank.problems import Passage
from thinktank.retrieval.dense import DenseVectors
from thinktank.retrieval.errors import RetrievalError
from thinktank.retrieval.fusion import reciprocal_rank_fusion
from thinktank.retrieval.index import CorpusIndex, load_index
from thinktank.retrieval.index import Progress as ProgressFn

__all__ = ["Mode", "Retrievers"]

Mode = Literal["bm25", "dense", "hybrid"]
#: how deep each ranking goes before a hybrid search fuses them
HYBRID_DEPTH = 100


@contextlib.contextmanager
def _progress_bar(corpus: Path, show: bool) -> Iterator[ProgressFn | None]:
    """A rich bar on stderr over the files being tokenised (drawn only on a terminal)."""
    console = Console(stderr=True)
    if not show or not console.is_terminal:
        yield None
        return
    columns = (TextColumn("indexing {task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"))
    with Progress(*columns, console=console, transient=True) as bar:
        job = bar.add_task(corpus.name, total=None, unit="")

        def tick(done: int, total: int, unit: str) -> None:
            bar.update(job, completed=done, total=total, unit=unit)

        yield tick


class Retrievers:
    def __init__(self, cache: Path | None = None, *, progress: bool = True) -> None:
        """`cache`: where indexes are kept (default: the thinktank cache's `retrieval/`)."""
        self.cache = cache
        self.progress = progress
        self._indexes: dict[Path, CorpusIndex] = {}
        self._dense: dict[tuple[Path, str], DenseVectors] = {}
        self._locks: dict[object, asyncio.Lock] = {}

    def _lock(self, key: object) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def index(self, corpus: str | Path) -> CorpusIndex:
        """The corpus's index, built or loaded once per run."""
        path = Path(corpus).resolve()
        async with self._lock(path):
            if path not in self._indexes:
                cache = self.cache or cache_dir("retrieval")

                def build() -> CorpusIndex:
                    with _progress_bar(path, self.progress) as tick:
                        return load_index(path, cache, progress=tick)

                self._indexes[path] = await asyncio.to_thread(build)
            return self._indexes[path]

    async def dense(self, ctx: Context, index: CorpusIndex, model: str) -> DenseVectors:
        key = (index.corpus, model)
        async with self._lock(key):
            if key not in self._dense:
                vectors = DenseVectors(index, model)
                await vectors.ensure(ctx)
                self._dense[key] = vectors
            return self._dense[key]

    async def search(
        self, ctx: Context, corpus: str | Path, query: str, *, k: int, mode: Mode = "bm25", embedding_model: str | None = None
    ) -> list[Passage]:
        """The top `k` passages of `corpus` for `query`, best first, each with its score; traced as "retrieve"."""
        if mode != "bm25" and not embedding_model:
            raise RetrievalError(f"{mode} retrieval needs an embedding_model")
        node = ctx.child("retrieve")
        started = time.perf_counter()
        try:
            index = await self.index(corpus)
            depth = max(k, HYBRID_DEPTH) if mode == "hybrid" else k
            bm25 = index.bm25(query, depth) if mode != "dense" else []
            dense: list[tuple[int, float]] = []
            if mode != "bm25":
                assert embedding_model is not None
                vectors = await self.dense(node, index, embedding_model)
                dense = await vectors.search(node, query, depth)
            if mode == "hybrid":
                hits = reciprocal_rank_fusion([[i for i, _ in bm25], [i for i, _ in dense]])[:k]
            else:
                hits = bm25 or dense
        except BaseException as exc:
            node.node.error = f"{type(exc).__name__}: {exc}"
            raise
        passages = [index.with_score(i, score) for i, score in hits]
        node.node.notes.update(
            corpus=str(index.corpus), mode=mode, k=k, latency_s=round(time.perf_counter() - started, 6),
            passage_ids=[p.id for p in passages], skipped_files=len(index.skipped),
            index="built" if index.stats.built else "loaded",
        )  # fmt: skip
        return passages
