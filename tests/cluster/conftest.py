"""`ray_cluster`: a real two-node Ray cluster on loopback (head + one worker node, one CPU each) for a module's
tests, stopped with every process it started at the end; `ray_token`: the test process joins with the nodes' token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .local_cluster import LocalCluster, cluster_env, driver_env


@pytest.fixture(scope="package", autouse=True)
def ray_token() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in driver_env().items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def ray_cluster(ray_token: None) -> Iterator[LocalCluster]:
    cluster = LocalCluster(cluster_env())
    try:
        cluster.start_head()
        cluster.add_node()
        yield cluster
    finally:
        cluster.stop()
