"""Two real processes add trials to one Optuna study on a real PostgreSQL server (`postgres_url`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from thinktank.search.storage import open_storage

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TRIALS = 30

# each process builds its own pool (as a machine of its own would), waits for the other at a barrier, then runs trials
SCRIPT = """
import asyncio, sys, time
from pathlib import Path
from search.fakes import MODELS, engine, problems
from search.test_study import SPEC
from thinktank.search.pool import SamplePool
from thinktank.search.study import SearchSettings, run_study

url, run_dir, me, other = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])

async def main():
    eng, _ = engine()
    probs = problems(10)
    run_dir.mkdir(parents=True, exist_ok=True)
    pool = SamplePool(run_dir / "pool.sqlite", probs, SPEC, engine=eng)
    await pool.build()
    me.touch()
    deadline = time.monotonic() + 120
    while not other.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the other process never arrived")
        await asyncio.sleep(0.01)
    settings = SearchSettings(trials=int(sys.argv[5]), draws=1, study_storage=url, study_name="shared")
    results = await run_study(pool, MODELS, [p.id for p in probs], settings, run_dir=run_dir)
    print(len(results))

asyncio.run(main())
"""


def test_two_processes_add_trials_to_one_study_on_postgres(postgres_url, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    script = tmp_path / "two_processes.py"
    script.write_text(SCRIPT)
    a, b = tmp_path / "a.ready", tmp_path / "b.ready"
    procs = []
    for name, me, other in (("a", a, b), ("b", b, a)):
        argv = [sys.executable, str(script), postgres_url, str(tmp_path / name), str(me), str(other), str(TRIALS)]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    summaries = optuna.get_all_study_summaries(open_storage(postgres_url))
    assert [s.study_name for s in summaries] == ["shared"]  # one study, made by whichever came first
    study = optuna.load_study(study_name="shared", storage=open_storage(postgres_url))
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert TRIALS <= len(complete) <= TRIALS + 1  # together they stop at the target (one more at most: a race)
    assert len({t.number for t in complete}) == len(complete)
    owners = {t.user_attrs["owner"].rsplit(":", 2)[1] for t in complete}
    assert owners == {str(p.pid) for p in procs}  # both processes ran trials of it
    assert all(int(out.split()[-1]) >= TRIALS for out, _ in outs)  # each saw the whole study's finished trials
