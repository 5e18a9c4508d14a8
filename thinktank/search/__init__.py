"""Architecture search by replaying a sample pool: generate once, score thousands of configurations, confirm on test.

pool = SamplePool(path, dev_problems, PoolSpec(models=("a", "b")), engine=engine)
await pool.build()
evaluation = await evaluate(pool, config, [p.id for p in dev_problems])
outcome = await run_search(engine, task="humaneval", dev=dev, test=test, models=["a", "b"], run_dir=..., ...)
"""

from thinktank.search.pool import PoolSpec, SamplePool
from thinktank.search.replay import Evaluation, evaluate
from thinktank.search.space import Config, PoolLimits, Stage, suggest
from thinktank.search.study import QueryBudget, SearchOutcome, SearchSettings, run_search, run_study, split_problems

__all__ = [
    "Config",
    "Evaluation",
    "PoolLimits",
    "PoolSpec",
    "QueryBudget",
    "SamplePool",
    "SearchOutcome",
    "SearchSettings",
    "Stage",
    "evaluate",
    "run_search",
    "run_study",
    "split_problems",
    "suggest",
]
