"""Distributed eval and search on Ray (`thinktank[ray]`): workers on the cluster's nodes solve or fill the sample
pool, the driver stores."""

from thinktank.cluster.connect import NodeFacts, connected
from thinktank.cluster.eval import run_eval_on_ray
from thinktank.cluster.search import PoolJob, PoolWorker, build_pool_on_ray
from thinktank.cluster.worker import EngineSpec, EvalWorker, OpenEngine, WorkerInfo, WorkerJob

__all__ = [
    "EngineSpec",
    "EvalWorker",
    "NodeFacts",
    "OpenEngine",
    "PoolJob",
    "PoolWorker",
    "WorkerInfo",
    "WorkerJob",
    "build_pool_on_ray",
    "connected",
    "run_eval_on_ray",
]
