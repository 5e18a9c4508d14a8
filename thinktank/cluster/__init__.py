"""Distributed evaluation on Ray (`thinktank[ray]`): workers on the cluster's nodes solve, the driver stores."""

from thinktank.cluster.connect import NodeFacts, connected
from thinktank.cluster.eval import run_eval_on_ray
from thinktank.cluster.worker import EngineSpec, EvalWorker, OpenEngine, WorkerInfo, WorkerJob

__all__ = ["EngineSpec", "EvalWorker", "NodeFacts", "OpenEngine", "WorkerInfo", "WorkerJob", "connected", "run_eval_on_ray"]
