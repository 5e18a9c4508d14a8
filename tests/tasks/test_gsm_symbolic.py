"""GSM-symbolic problems from the real reasoning-gym generators: seeded, stable ids, answers the grader accepts."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from thinktank.exceptions import ConfigError, TaskDataError
from thinktank.tasks import gsm_symbolic
from thinktank.tasks.gsm_symbolic import TEMPLATES, GsmSymbolicTask, generate_example
from thinktank.verifiers.math import MathVerifier


def _snapshot(task: GsmSymbolicTask) -> list[tuple[str, str, str]]:
    return [(p.id, p.input.prompt, p.hidden.answer) for p in task.problems()]


def test_same_n_and_seed_give_the_same_problems() -> None:
    assert _snapshot(GsmSymbolicTask(n=30, seed=7)) == _snapshot(GsmSymbolicTask(n=30, seed=7))


def test_different_seeds_give_different_problems() -> None:
    a, b = _snapshot(GsmSymbolicTask(n=30, seed=1)), _snapshot(GsmSymbolicTask(n=30, seed=2))
    assert len({x[1] for x in a} & {x[1] for x in b}) <= 1


def test_a_smaller_n_is_a_prefix() -> None:
    assert _snapshot(GsmSymbolicTask(n=5, seed=3)) == _snapshot(GsmSymbolicTask(n=40, seed=3))[:5]


def test_ids_are_unique_and_determine_the_problem() -> None:
    problems = GsmSymbolicTask(n=50, seed=11).load()
    assert len({p.id for p in problems}) == 50
    for problem in problems[:10]:
        prefix, template, seed = problem.id.split("/")
        assert prefix == "gsm-symbolic"
        assert problem.input.meta == {"template": int(template), "seed": int(seed), "source": "reasoning-gym==0.1.25"}
        example = generate_example(int(template), int(seed))
        assert example["question"].strip() in problem.input.prompt
        assert problem.hidden.answer == str(example["answer"])


def test_one_round_covers_every_template_once() -> None:
    problems = GsmSymbolicTask(n=len(TEMPLATES), seed=0).load()
    assert sorted(p.input.meta["template"] for p in problems) == list(TEMPLATES)
    assert len(TEMPLATES) == 85  # reasoning-gym serves 85 of its 100 templates


def test_problems_are_math_without_public_tests() -> None:
    for problem in GsmSymbolicTask(n=10, seed=0).problems():
        assert problem.kind == "math"
        assert problem.input.public_tests == () and problem.input.entry_point is None
        assert "#### <number>" in problem.input.prompt
        assert problem.hidden.answer and not problem.hidden.test_code


def test_reference_solutions_pass_the_math_verifier() -> None:
    """The generators' own worked solutions end in '#### <answer>': grading them checks data and verifier together."""
    verifier = MathVerifier()
    failures = []
    for problem in GsmSymbolicTask(n=2 * len(TEMPLATES), seed=5).problems():
        meta = problem.input.meta
        worked = generate_example(meta["template"], meta["seed"])["metadata"]["answer_cot"]
        if not verifier.grade(worked, problem.hidden.answer).passed:
            failures.append(problem.id)
    assert failures == []


def test_wrong_answers_fail() -> None:
    verifier = MathVerifier()
    for problem in GsmSymbolicTask(n=20, seed=9).problems():
        wrong = float(problem.hidden.answer) + 1
        assert not verifier.grade(f"#### {wrong:g}", problem.hidden.answer).passed


def test_shim_does_not_linger() -> None:
    GsmSymbolicTask(n=1).load()
    assert "reasoning_gym" not in sys.modules and "reasoning_gym.utils" not in sys.modules


@pytest.mark.parametrize("options", [{"n": -1}, {"templates": [32]}, {"templates": [100]}, {"templates": []}])
def test_bad_options(options: dict) -> None:
    with pytest.raises(ConfigError):
        GsmSymbolicTask(**options)


def test_unknown_template_for_generate_example() -> None:
    with pytest.raises(ConfigError):
        generate_example(35, 0)


@pytest.fixture
def fresh_generators() -> Iterator[None]:
    gsm_symbolic._generators.cache_clear()
    yield
    gsm_symbolic._generators.cache_clear()


def test_tampered_generator_file_is_refused_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_generators: None
) -> None:
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path))
    marker = tmp_path / "executed"
    target = tmp_path / "data" / "gsm_symbolic" / "generators_00_49.py"
    target.parent.mkdir(parents=True)
    target.write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(TaskDataError, match="sha256"):
        GsmSymbolicTask(n=1).load()
    assert not marker.exists()
