"""`search --ray` on a REAL two-node Ray cluster on loopback (`ray_cluster`): the pool the workers fill equals a local
build with 1 or 2 workers, every problem committed once, and a second fill starts no worker."""

from __future__ import annotations

import pytest
from search.fakes import problems

from thinktank.cluster import PoolJob, build_pool_on_ray, connected
from thinktank.search.pool import SamplePool

from .scripted import SearchFakesEngine
from .test_search_cluster import SPEC, local_pool, pool_rows

pytestmark = pytest.mark.integration


async def test_the_pool_filled_on_two_nodes_equals_a_local_build_with_any_number_of_workers(ray_cluster, tmp_path):
    probs = problems(8)
    expected = await local_pool(tmp_path, probs)
    job = PoolJob(SearchFakesEngine(), SPEC)
    with connected(ray_cluster.address) as nodes:
        assert len(nodes) == 2
        for workers in (2, 1):
            path = tmp_path / f"ray{workers}" / "pool.sqlite"
            pool = SamplePool(path, probs, SPEC)
            seen: list = []
            assert await build_pool_on_ray(job, pool, workers=workers, concurrency=2, on_workers=seen.extend) == 8
            assert len({w.node_id for w in seen}) == workers  # round-robin: one worker on each node
            assert await build_pool_on_ray(job, pool, workers=workers) == 0  # nothing missing: no worker started
            await pool.build()  # complete: the driver needs no engine
            pool.close()
            assert pool_rows(path) == expected
