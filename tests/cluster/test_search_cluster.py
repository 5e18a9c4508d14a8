"""`search --ray` without a cluster: pool workers fill one problem each in process, the driver commits their rows
once; the pool equals a local build whatever the number of workers. The real cluster is in test_search_ray.py."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import pytest
from search.fakes import MODELS, engine, problems

from thinktank.cluster import PoolJob, PoolWorker, dispatch
from thinktank.exceptions import PoolError, UnknownModelError
from thinktank.search.pool import PoolSpec, SamplePool

from .scripted import SearchFakesEngine
from .test_cluster import FAKE_RAY, ActorGone

SPEC = PoolSpec(models=tuple(MODELS), n=3, test_replies=2, repair_rounds=1)


def pool_rows(path):
    """Every row of the pool file by table, without latencies (they differ from run to run; nothing else may)."""
    db = sqlite3.connect(path)
    out = {}
    for table in ("samples", "tests", "test_runs", "judge", "repairs", "chains"):
        cursor = db.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cursor.description]
        out[table] = sorted(tuple(v for n, v in zip(names, row, strict=True) if n != "latency_s") for row in cursor)
    db.close()
    return out


async def local_pool(tmp_path, probs):
    eng, _ = engine()
    pool = SamplePool(tmp_path / "local" / "pool.sqlite", probs, SPEC, engine=eng)
    await pool.build()
    pool.close()
    return pool_rows(tmp_path / "local" / "pool.sqlite")


class FakePoolHandle:
    """`handle.fill.remote(problem)` like a PoolWorker actor's, in process; gone for good after `dies_after` calls."""

    def __init__(self, spec=SPEC, dies_after=None):
        self.worker = PoolWorker(PoolJob(SearchFakesEngine(), spec))
        self.calls, self.dies_after = [], dies_after
        self.fill = SimpleNamespace(remote=self._fill)

    async def _fill(self, problem):
        self.calls.append(problem.id)
        if self.dies_after is not None and len(self.calls) > self.dies_after:
            raise ActorGone("the actor died")
        return await self.worker.fill(problem)


async def fill_on(handles, pool):
    await dispatch.drain(FAKE_RAY, handles, [pool.problems[p] for p in pool.unbuilt()],
                         call=lambda h, problem: h.fill.remote(problem), name=lambda problem: f"problem {problem.id}",
                         commit=pool.add_rows, concurrency=2, attempts=3)  # fmt: skip
    for h in handles:
        await h.worker.stop()


@pytest.mark.parametrize("workers", [1, 3])
async def test_a_pool_filled_by_workers_equals_a_local_build(tmp_path, workers):
    probs = problems(6)
    expected = await local_pool(tmp_path, probs)
    assert expected["samples"] and expected["tests"] and expected["test_runs"]
    path = tmp_path / f"ray{workers}" / "pool.sqlite"
    pool = SamplePool(path, probs, SPEC)  # no engine on the driver: the workers fill everything build() makes
    handles = [FakePoolHandle(dies_after=1 if workers == 3 and i == 0 else None) for i in range(workers)]
    await fill_on(handles, pool)
    calls = sum(len(h.calls) for h in handles)
    assert pool.unbuilt() == [] and (calls == 6 if workers == 1 else calls >= 7)  # 3: one worker is lost mid-fill
    await pool.build()  # nothing left to make: it would need an engine otherwise
    assert len(pool.samples("small", 0.8, "p03")) == 3 and pool.tests("big", "p03") is not None  # read in, not just stored
    pool.close()
    assert pool_rows(path) == expected
    reopened = SamplePool(path, probs, SPEC)
    assert reopened.unbuilt() == [] and reopened.cost_summary() == SamplePool(path, probs, SPEC).cost_summary()


async def test_rows_of_a_problem_the_pool_has_are_refused(tmp_path):
    probs = problems(2)
    pool = SamplePool(tmp_path / "pool.sqlite", probs, SPEC)
    worker = PoolWorker(PoolJob(SearchFakesEngine(), SPEC))
    rows = await worker.fill(probs[0])
    pool.add_rows([rows])
    assert pool.unbuilt() == ["p01"]
    with pytest.raises(PoolError, match="already has rows of p00"):
        pool.add_rows([rows])
    await worker.stop()


async def test_an_error_filling_a_problem_is_raised_as_itself():
    worker = PoolWorker(PoolJob(SearchFakesEngine(), PoolSpec(models=("nobody",), n=1)))
    with pytest.raises(UnknownModelError, match="nobody"):
        await worker.fill(problems(1)[0])
    await worker.stop()
