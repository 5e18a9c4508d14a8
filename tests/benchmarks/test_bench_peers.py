"""benchmarks/bench_peers.py's helpers: peer venvs that cannot be had, drivers that fail, resuming, the table.

A peer that is not installed, fails to install, refuses or crashes gives rows that say "not run" and why; the
benchmark goes on. Drivers run as real subprocesses (a fake peer speaking the drivers' protocol); answers are graded
with thinktank's real grader (the sandbox), as in the benchmark.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from thinktank.problems import HiddenChecks, Problem, TaskInput

ROOT = Path(__file__).resolve().parents[2]
FAKE_DRIVER = Path(__file__).with_name("fake_peer_driver.py")


def _load_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_peers", ROOT / "benchmarks" / "bench_peers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_peers"] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


bp = _load_bench()


def fake_python(path: Path, *, version: str | None, pip_says: str = "", pip_code: int = 1) -> Path:
    """An executable standing in for a venv's python: answers the version probe and `-m pip install`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    probe = f'echo "{version}"; exit 0' if version else "exit 1"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-c" ]; then {probe}; fi\n'
        f'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "{pip_says}"; exit {pip_code}; fi\n'
        "exit 2\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


SPEC = bp.PeerSpec("fakepeer", "fakepeer==0.0.1", "fakepeer", ("echo",), driver_path=FAKE_DRIVER)


def code_problem(i: int) -> Problem:
    task = TaskInput(f"toy/{i}", "code", "Write add(a, b).", entry_point="add", public_tests=("assert add(1, 2) == 3",))
    return Problem(task, HiddenChecks(test_code="def check(candidate):\n    assert candidate(2, 3) == 5\n"))


def counters_from(values: list[dict[str, float]]):  # type: ignore[no-untyped-def]
    it = iter(values)

    async def counters() -> dict[str, float]:
        return next(it)

    return counters


def args(**overrides: object) -> argparse.Namespace:
    return bp.parser().parse_args([f"--{k.replace('_', '-')}={v}" for k, v in overrides.items()])


# --- venvs ---------------------------------------------------------------------------------------------------


def test_a_peer_without_a_venv_is_not_run_when_installing_is_off(tmp_path: Path) -> None:
    setup = bp.ensure_peer(SPEC, tmp_path, install=False)
    assert not setup.ready
    assert "not installed" in setup.reason and str(tmp_path / "fakepeer") in setup.reason


def test_a_failed_pip_install_is_not_run_with_pips_words(tmp_path: Path) -> None:
    fake_python(tmp_path / "fakepeer" / "bin" / "python", version=None,
                pip_says="ERROR: No matching distribution found for fakepeer==0.0.1")  # fmt: skip
    setup = bp.ensure_peer(SPEC, tmp_path)
    assert not setup.ready
    assert "pip install fakepeer==0.0.1 failed (1)" in setup.reason
    assert "No matching distribution found" in setup.reason


def test_an_install_that_leaves_no_version_is_not_run(tmp_path: Path) -> None:
    fake_python(tmp_path / "fakepeer" / "bin" / "python", version=None, pip_code=0)
    setup = bp.ensure_peer(SPEC, tmp_path)
    assert not setup.ready and "has no version" in setup.reason


def test_another_version_than_the_pinned_one_is_not_run_when_installing_is_off(tmp_path: Path) -> None:
    fake_python(tmp_path / "fakepeer" / "bin" / "python", version="0.0.2")
    setup = bp.ensure_peer(SPEC, tmp_path, install=False)
    assert not setup.ready and "version 0.0.2 of fakepeer==0.0.1" in setup.reason


def test_an_installed_peer_of_the_pinned_version_is_ready_without_pip(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "fakepeer" / "bin" / "python", version="0.0.1", pip_says="pip must not run")
    setup = bp.ensure_peer(SPEC, tmp_path)
    assert setup.ready and setup.python == python and setup.version == "0.0.1"


# --- drivers ---------------------------------------------------------------------------------------------------


def driver_args(approach: str) -> list[str]:
    return ["--approach", approach, "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]


async def test_a_driver_that_refuses_gives_not_run_with_its_reason(tmp_path: Path) -> None:
    outcome = await bp.run_driver(Path(sys.executable), FAKE_DRIVER, driver_args("refuse"), [code_problem(0).input],
                                  counters_from([]), tmp_path / "log")  # fmt: skip
    assert outcome.not_run == "the fake peer refuses this approach"


async def test_a_driver_that_crashes_before_its_header_gives_not_run_with_its_log(tmp_path: Path) -> None:
    outcome = await bp.run_driver(Path(sys.executable), FAKE_DRIVER, driver_args("crash"), [code_problem(0).input],
                                  counters_from([]), tmp_path / "log")  # fmt: skip
    assert outcome.not_run is not None and "cannot import its library" in outcome.not_run


async def test_a_driver_answers_every_problem_between_two_counter_reads(tmp_path: Path) -> None:
    tasks = [code_problem(i).input for i in range(3)]
    before = {bp.PROMPT: 100.0, bp.COMPLETION: 10.0}
    after = {bp.PROMPT: 160.0, bp.COMPLETION: 35.0}
    outcome = await bp.run_driver(Path(sys.executable), FAKE_DRIVER, driver_args("echo"), tasks,
                                  counters_from([before, after]), tmp_path / "log")  # fmt: skip
    assert outcome.not_run is None and not outcome.errors
    assert set(outcome.texts) == {"toy/0", "toy/1", "toy/2"}
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (60, 25)
    assert outcome.version == "0.0.1" and outcome.settings == {"temperature": 0}


async def test_a_peer_printing_to_stdout_does_not_break_the_protocol(tmp_path: Path) -> None:
    tasks = [code_problem(i).input for i in range(2)]
    outcome = await bp.run_driver(Path(sys.executable), FAKE_DRIVER, driver_args("noisy"), tasks,
                                  counters_from([{}, {}]), tmp_path / "log")  # fmt: skip
    assert set(outcome.texts) == {"toy/0", "toy/1"} and not outcome.errors
    assert "a peer printing to stdout" in (tmp_path / "log").read_text()


async def test_a_driver_that_dies_midway_leaves_errors_for_the_rest(tmp_path: Path) -> None:
    tasks = [code_problem(i).input for i in range(2)]
    counters = counters_from([{}, {}])
    outcome = await bp.run_driver(Path(sys.executable), FAKE_DRIVER, driver_args("die_after_one"), tasks, counters,
                                  tmp_path / "log")  # fmt: skip
    assert list(outcome.texts) == ["toy/0"]
    assert "gave no answer" in outcome.errors["toy/1"]


# --- the benchmark goes on ---------------------------------------------------------------------------------------


def bench(tmp_path: Path, setups: dict[str, object]):  # type: ignore[no-untyped-def]
    peers = {"fakepeer": SPEC, "missing": bp.PeerSpec("missing", "missing==1.0", "missing", ("x",))}
    return bp.Bench(args(), peers, setups, None, "http://127.0.0.1:9/v1", "m", counters_from([{}, {}]),
                    tmp_path / "logs", {"date": "today"})  # fmt: skip


async def test_an_uninstalled_peer_gets_a_not_run_row_and_the_run_goes_on(tmp_path: Path) -> None:
    problems = [code_problem(0), code_problem(1)]
    missing = bp.ensure_peer(bp.PeerSpec("missing", "missing==1.0", "missing", ("x",)), tmp_path, install=False)
    ready = bp.PeerSetup("fakepeer", python=Path(sys.executable), version="0.0.1")
    run = bench(tmp_path, {"fakepeer": ready, "missing": missing})
    not_run_row = await run.approach("toy", "missing:x", problems)
    ran = await run.approach("toy", "fakepeer:echo", problems)
    assert not_run_row.status == "not run" and "not installed" in not_run_row.reason
    assert ran.status == "ok" and (ran.n, ran.passed) == (2, 2)  # graded on the hidden check in the sandbox
    assert [p["id"] for p in ran.problems] == ["toy/0", "toy/1"]
    table = bp.render_table([not_run_row, ran])
    assert "| toy | missing:x | not run |" in table and "not installed" in table
    assert "| toy | fakepeer:echo | 2/2 |" in table


async def test_a_peer_whose_venv_was_never_prepared_is_not_run(tmp_path: Path) -> None:
    row = await bench(tmp_path, {}).approach("toy", "fakepeer:echo", [code_problem(0)])
    assert row.status == "not run" and "not prepared" in row.reason


# --- results, resuming, the table --------------------------------------------------------------------------------


def test_results_resume_skips_rows_that_ran_and_retries_not_run_ones(tmp_path: Path) -> None:
    results = bp.Results(tmp_path / "r.jsonl")
    results.append(bp.Row("humaneval", "thinktank:single", "ok", n=2, passed=1))
    results.append(bp.Row("humaneval", "optillm:bon", "not run", "pip failed"))
    results.append(bp.Row("spider", "its_hub:best_of_n", "not run", "pip failed"))
    results.append(bp.Row("spider", "its_hub:best_of_n", "ok", n=2, passed=2))  # a later run: the last row wins
    assert results.done() == {("humaneval", "thinktank:single"), ("spider", "its_hub:best_of_n")}
    assert results.rows()[("spider", "its_hub:best_of_n")].passed == 2
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 4
    assert json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])["approach"] == "thinktank:single"


def test_table_gives_accuracy_with_an_interval_and_ratios_to_greedy() -> None:
    greedy = bp.Row("humaneval", bp.GREEDY, "ok", n=4, passed=2, prompt_tokens=400, completion_tokens=100, wall_s=10)
    peer = bp.Row("humaneval", "optillm:bon", "ok", n=4, passed=3, prompt_tokens=2000, completion_tokens=500,
                  wall_s=25, version="0.4.0", settings={"own": "n=3 at T=1"})  # fmt: skip
    other_task = bp.Row("spider", "optillm:bon", "ok", n=1, passed=0, completion_tokens=5, wall_s=1)
    lines = bp.render_table([greedy, peer, other_task]).splitlines()
    assert lines[2].startswith("| humaneval | thinktank:single | 2/4 | 50% (15%–85%) | 100 | 25 | 1.00× |")
    assert "| 3/4 | 75% (30%–95%) | 500 | 125 | 5.00× | 25.0 | 2.50× | 0.4.0; own: n=3 at T=1 |" in lines[3]
    assert "| n/a | 1.0 | n/a |" in lines[4]  # no greedy row for spider: no ratio


def _verdict_row(approach: str, outcomes: list[bool], tokens: int) -> object:
    problems = [{"id": f"p{i}", "passed": ok} for i, ok in enumerate(outcomes)]
    return bp.Row("humaneval", approach, "ok", n=len(outcomes), passed=sum(outcomes), prompt_tokens=tokens // 2,
                  completion_tokens=tokens - tokens // 2, problems=problems)  # fmt: skip


def test_the_verdict_pits_thinktank_s_best_against_the_best_peer_on_accuracy_and_tokens() -> None:
    ours = _verdict_row("thinktank:sample-8-exec", [True, True, True, False], 900)
    cheap = _verdict_row("thinktank:single", [True, False, False, False], 100)
    peer = _verdict_row("optillm:bon", [True, False, True, False], 1000)
    worse_peer = _verdict_row("its_hub:self_consistency", [False, False, False, False], 50)
    (line,) = bp.verdicts([cheap, ours, peer, worse_peer])
    assert line.startswith("humaneval: target met — thinktank's best thinktank:sample-8-exec 3/4 at 900 tokens")
    assert "best peer optillm:bon 2/4 at 1,000 tokens (0.90×)" in line and "paired Δ +25.0%" in line
    (line,) = bp.verdicts([cheap, _verdict_row("thinktank:x", [True, True, True, False], 2000), peer])
    assert "target NOT met" in line  # as accurate, but more tokens than the peer
    assert bp.verdicts([cheap]) == ["humaneval: no verdict (a thinktank row and a peer row are both needed)"]


def test_approaches_expand_peers_and_always_start_with_greedy() -> None:
    assert bp.parse_approaches("its_hub,thinktank:sample-8-exec")[:4] == [
        "thinktank:single", "its_hub:self_consistency", "its_hub:best_of_n", "thinktank:sample-8-exec",
    ]  # fmt: skip
    assert bp.parse_approaches("thinktank:single,optillm:bon") == ["thinktank:single", "optillm:bon"]
    with pytest.raises(SystemExit, match="unknown system 'archon'"):
        bp.parse_approaches("archon:layers")


# --- the public-check service DSPy's reward calls ------------------------------------------------------------------


def test_public_checks_service_runs_replies_in_the_sandbox_against_public_checks_only() -> None:
    code = code_problem(0).input
    math = TaskInput("toy/m", "math", "What is 2+2?")
    requests = [
        {"task": json.loads(bp.task_json(code)), "text": "```python\ndef add(a, b):\n    return a + b\n```"},
        {"task": json.loads(bp.task_json(code)), "text": "```python\ndef add(a, b):\n    return a - b\n```"},
        {"task": json.loads(bp.task_json(math)), "text": "It is 4.\n#### 4"},
        {"task": json.loads(bp.task_json(math)), "text": ""},
    ]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peers" / "public_checks.py")], text=True,
                          input="".join(json.dumps(r) + "\n" for r in requests), capture_output=True, timeout=120,
                          check=True)  # fmt: skip
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["passed"], r["checked"]) for r in replies] == [(True, True), (False, True), (True, False), (False, False)]
    assert "AssertionError" in replies[1]["reason"]
