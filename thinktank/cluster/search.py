"""`thinktank search --ray`: the sample pool's eager build spread over the cluster; the driver alone writes the pool.

    with connected("10.0.0.5:6379"):
        await build_pool_on_ray(PoolJob(OpenEngine(["a", "b"]), spec), pool, workers=2)

Each `PoolWorker` opens its engine on its node (as an eval worker does) and fills one problem at a time: a throwaway
one-problem `SamplePool` built by the same `build` a local search runs (samples of every model and temperature, with
seed 0 so sample i is drawn with seed i; generated tests; their runs on the samples, in that node's sandbox). It
returns that problem's rows; the driver commits them (`SamplePool.add_rows`, one transaction per batch), so a
problem's rows are whole or absent and each is committed once. Since a problem's rows depend only on its requests
(model, prompt, seed, sample index), the pool is the same whatever the number of workers. Actors, lanes and faults
are `dispatch.py`'s, shared with `eval --ray`.

What the study asks for later (judge scores, repair chains, samples past the pool's n) and the confirmation run are
made on the driver's engine, as without Ray; so is the rest of a problem a local build left half done.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from thinktank.cluster import dispatch
from thinktank.cluster._ray import import_ray
from thinktank.cluster.worker import EngineSpec, EngineWorker, WorkerInfo
from thinktank.engine.engine import Engine
from thinktank.search.pool import PoolProgress, PoolSpec, SamplePool
from thinktank.search.pool.store import PoolRows
from thinktank.tasks.base import Problem
from thinktank.telemetry import TraceSink, exporting

__all__ = ["PoolJob", "PoolWorker", "build_pool_on_ray"]


@dataclass(frozen=True)
class PoolJob:
    """Everything a pool worker needs besides the problems: how to open its engine, and what the pool holds."""

    engine: EngineSpec
    spec: PoolSpec
    env: dict[str, str] = field(default_factory=dict)  # set in the worker's environment (e.g. the API key)
    otlp_endpoint: str | None = None  # each worker exports its pool queries' traces there itself (the driver's --otlp)


class PoolWorker(EngineWorker):
    """A Ray actor: fills one problem's eager pool rows per call and returns them (it never writes the driver's pool)."""

    job: PoolJob

    def _setup(self, engine: Engine) -> tuple[Engine, TraceSink | None]:
        return engine, self._stack.enter_context(exporting(self.job.otlp_endpoint, service_name="thinktank-worker"))

    async def fill(self, problem: Problem) -> PoolRows:
        engine, sink = await self._open()
        with tempfile.TemporaryDirectory(prefix="tt-pool-") as tmp:
            pool = SamplePool(Path(tmp) / "pool.sqlite", [problem], self.job.spec, engine=engine, telemetry=sink)
            try:
                await pool.build()
                return pool.rows()
            finally:
                pool.close()


async def build_pool_on_ray(
    job: PoolJob,
    pool: SamplePool,
    *,
    workers: int | None = None,
    concurrency: int = 4,
    max_restarts: int = 3,
    problem_attempts: int = 3,
    progress: PoolProgress | None = None,
    on_workers: Callable[[list[WorkerInfo]], None] | None = None,
) -> int:
    """Fill the problems the pool has no row of on `workers` Ray actors (default: one per alive node), `concurrency`
    problems in flight on each; returns how many were filled. Needs a connected Ray (`connect.connected`)."""
    ray = import_ray()
    todo = [pool.problems[pid] for pid in pool.unbuilt()]
    if not todo:  # a built pool starts no worker (and no llama-server)
        return 0
    if progress:
        progress.start(f"pool of {len(todo)} problems on Ray", len(todo))
    handles = dispatch.start_actors(ray, PoolWorker, job, workers=workers, concurrency=concurrency, max_restarts=max_restarts)

    def commit(batch: list[PoolRows]) -> None:
        pool.add_rows(batch)  # the one write of these problems' rows
        for _ in batch:
            if progress:
                progress.advance()

    try:
        infos = await dispatch.ready(ray, handles)
        if on_workers:
            on_workers(infos)
        await dispatch.drain(ray, handles, todo, call=lambda handle, problem: handle.fill.remote(problem),
                             name=lambda problem: f"problem {problem.id}", commit=commit, concurrency=concurrency,
                             attempts=problem_attempts)  # fmt: skip
    finally:
        await dispatch.stop(ray, handles)
    return len(todo)
