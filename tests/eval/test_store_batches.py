"""`RunStore.add_many`: several rows in one transaction, all whole or none (the Ray driver's commits)."""

import pytest

from thinktank.eval.store import ProblemRecord, RunStore
from thinktank.exceptions import StoreError


def record(pid: str, position: int = 0) -> ProblemRecord:
    return ProblemRecord(pid, position, True, "ok", "1", 1, 1, 3, 1, 1, 0.0, 0, 0.01, False, None, [{"text": "1"}], {"name": pid})


def test_a_batch_is_committed_whole(tmp_path):
    store = RunStore(tmp_path)
    store.add_many([record("a", 0), record("b", 1)])
    store.add_many([])
    assert [r.problem_id for r in store.records()] == ["a", "b"] and store.records()[1].trace == {"name": "b"}


def test_a_batch_with_a_recorded_or_repeated_problem_keeps_nothing_and_names_it(tmp_path):
    store = RunStore(tmp_path)
    store.add(record("a"))
    with pytest.raises(StoreError, match=r"problem a is already recorded"):
        store.add_many([record("b", 1), record("a")])
    with pytest.raises(StoreError, match=r"problem c is already recorded"):
        store.add_many([record("c", 2), record("d", 3), record("c", 2)])
    assert store.done_ids() == {"a"}  # neither batch left a row
