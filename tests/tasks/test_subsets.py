"""`--sample N --seed S`: a fixed seeded subset, the prefix of the same permutation the search splits dev/test from."""

from __future__ import annotations

from thinktank.tasks.base import seeded_shuffle
from thinktank.tasks.humaneval import HumanEvalTask


def test_sample_is_a_seeded_subset_and_a_prefix_of_the_shuffle() -> None:
    task = HumanEvalTask()
    everything = task.load()
    first = [p.id for p in task.load(sample=80, seed=0)]
    assert first == [p.id for p in task.load(sample=80, seed=0)]  # reproducible
    assert len(first) == len(set(first)) == 80
    assert first != [p.id for p in everything[:80]]  # not just the first 80
    assert first != [p.id for p in task.load(sample=80, seed=1)]
    assert first[:40] == [p.id for p in task.load(sample=40, seed=0)]  # dev split ⊂ eval subset
    assert first == [p.id for p in seeded_shuffle(everything, 0)[:80]]


def test_sample_larger_than_the_task_returns_everything_once() -> None:
    task = HumanEvalTask()
    ids = [p.id for p in task.load(sample=10_000, seed=3)]
    assert sorted(ids) == sorted(p.id for p in task.load())
