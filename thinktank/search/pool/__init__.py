"""The sample pool: what a search replays, generated once through the real techniques and kept in SQLite.

    pool = SamplePool(run_dir / "pool.sqlite", problems, PoolSpec(models=["a", "b"], n=8))
    await pool.build(engine)                          # samples + verdicts + behaviour keys, generated tests + pass matrix
    pool.samples("a", 0.8, "HumanEval/0")             # what `generate {models: [a], n: 8, temperature: 0.8}` returns

Fidelity: every row comes from the technique code and requests an exported architecture makes (`Generate` with
seed 0, so sample i is drawn with seed i; `GenTests.write_tests`; `Rank` pointwise; `Repair.repair_one`), through the
Engine and its response cache, so pools and `eval` runs share cached samples. Per answer the pool keeps the public
verdict, the behaviour key `vote` groups by (the kind's `answer_keys`, hashed) and the HIDDEN verdict, which only
scores configurations and never feeds their selection logic. Judge scores and repair chains are filled on demand
(`ensure_judge`, `ensure_chain`); samples beyond the spec's n are an *extension*, counted as search cost. Rows are
committed per problem as they arrive, so a killed build loses only calls in flight. Costs are nominal: what a call
costs whether or not the response cache served it (`cached` says which were served).
"""

from __future__ import annotations

from thinktank.exceptions import PoolError
from thinktank.search.pool.filling import SamplePool
from thinktank.search.pool.types import Answer, Call, Chain, PoolProgress, PoolSpec, TestSet

__all__ = ["Answer", "Call", "Chain", "PoolError", "PoolProgress", "PoolSpec", "SamplePool", "TestSet"]
