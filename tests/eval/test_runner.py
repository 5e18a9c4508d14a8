import sqlite3

import pytest

from thinktank.arch import load_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.eval.grading import Grader
from thinktank.eval.report import comparison_table, markdown_table, with_baseline, write_html
from thinktank.eval.runner import run_eval, summarize
from thinktank.eval.store import RunStore, StoreError
from thinktank.exceptions import BackendUnreachable, ConfigError
from thinktank.tasks.base import HiddenChecks, Problem, TaskInput


def math_problems(count):
    return [
        Problem(TaskInput(f"q{i}", "math", f"What is {i} + {i}? End with #### <number>."), HiddenChecks(answer=str(2 * i)))
        for i in range(count)
    ]


def adder(request, index):
    """Right for even i, wrong for odd i; reads i from the prompt."""
    i = int(request.messages[-1]["content"].split()[2])
    return f"#### {2 * i if i % 2 == 0 else 2 * i + 1}"


async def test_run_grades_stores_and_summarizes(tmp_path):
    store = RunStore(tmp_path / "run")
    store.bind_config({"task": "adder", "arch": "single", "models": ["m"]})
    engine = Engine({"m": ScriptedBackend(adder)})
    progress = await run_eval(engine, load_architecture("single", ["m"]), math_problems(10), store)
    assert progress.done == 10 and progress.passed == 5
    summary = summarize(store)
    assert summary["accuracy"] == 0.5 and summary["problems"] == 10
    assert summary["ci95"][0] < 0.5 < summary["ci95"][1]
    assert summary["calls_per_problem"] == 1.0 and summary["tokens_per_problem"] > 0
    record = store.records()[1]
    assert not record.passed and record.answer == "3" and record.trace["calls"] == []
    assert record.trace["children"][0]["calls"][0]["status"] == "ok"
    assert record.candidates[0]["hidden_verdict"]["passed"] is False
    html = write_html([summary], tmp_path / "report.html").read_text()
    assert "<svg" in html and "single" in html
    assert comparison_table([summary]).row_count == 1
    header, rule, row = markdown_table([summary]).splitlines()
    assert header.startswith("| run | arch |") and rule.count("---") == header.count("|") - 1
    assert "| single | 10 | 50.0% |" in row


async def test_report_pairs_runs_with_a_baseline(tmp_path):
    """`report --baseline`: the difference is taken problem by problem over the problems both runs graded."""
    summaries, outcomes = [], []
    for name, reply in [("worse", adder), ("better", lambda r, i: f"#### {2 * int(r.messages[-1]['content'].split()[2])}")]:
        store = RunStore(tmp_path / name)
        await run_eval(Engine({"m": ScriptedBackend(reply)}), load_architecture("single", ["m"]), math_problems(10), store)
        summaries.append(summarize(store))
        outcomes.append({r.problem_id: r.passed for r in store.records()})
    del outcomes[1]["q9"]  # the better run did not finish q9: pairs use the 9 shared problems
    with_baseline(summaries, outcomes, 0)
    paired = summaries[1]["paired"]
    assert (paired.problems, paired.only_b, paired.only_a) == (9, 4, 0)
    assert summaries[1]["delta"].startswith("+44.4 (") and summaries[1]["delta"].endswith("on 9 shared")
    assert summaries[0]["delta"] == "baseline"
    header = markdown_table(summaries).splitlines()[0]
    assert header.endswith("| Δ vs baseline (paired 95% CI) | McNemar p |")


class FlakyBackend(ScriptedBackend):
    """Dies after `fail_after` calls, like a server that went away mid-run."""

    def __init__(self, fail_after):
        super().__init__(adder, max_concurrency=1)
        self.fail_after = fail_after

    async def generate(self, request):
        if len(self.requests) >= self.fail_after:
            raise BackendUnreachable("gone", "http://x")
        return await super().generate(request)


async def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path):
    problems = math_problems(12)
    arch = load_architecture("single", ["m"])
    store = RunStore(tmp_path / "run")
    with pytest.raises(BackendUnreachable):
        await run_eval(Engine({"m": FlakyBackend(5)}), arch, problems, store, concurrency=1)
    assert len(store.done_ids()) == 5
    store.close()
    store = RunStore(tmp_path / "run")
    backend = ScriptedBackend(adder)
    progress = await run_eval(Engine({"m": backend}), arch, problems, store)
    assert progress.done == 7 and len(backend.requests) == 7  # only the missing ones
    ids = [r.problem_id for r in store.records()]
    assert sorted(ids) == sorted(p.id for p in problems) and len(ids) == len(set(ids))


def test_store_refuses_another_runs_config_and_other_versions(tmp_path):
    store = RunStore(tmp_path / "run")
    store.bind_config({"task": "a", "arch": "single"})
    with pytest.raises(ConfigError, match="arch differ"):
        store.bind_config({"task": "a", "arch": "sample-8-vote"})
    store.set_meta("schema_version", 999)
    store.close()
    with pytest.raises(StoreError, match="another thinktank version"):
        RunStore(tmp_path / "run")


async def test_disk_full_keeps_no_partial_row(tmp_path):
    store = RunStore(tmp_path / "run")
    engine = Engine({"m": ScriptedBackend(lambda r, i: "#### 0 " + "x" * 20000)})
    # simulate a full disk: the DB may not grow past its current pages
    (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    store._db.execute(f"PRAGMA max_page_count={pages + 1}")
    with pytest.raises(StoreError, match="could not write results.*nothing partial"):
        await run_eval(engine, load_architecture("single", ["m"]), math_problems(3), store, concurrency=1)
    assert store.done_ids() == set()
    assert sqlite3.connect(store.path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_tokens_served_from_the_cache_are_counted_apart(tmp_path):
    from thinktank.engine import ResponseCache

    engine = Engine({"m": ScriptedBackend(adder)}, cache=ResponseCache(tmp_path / "cache.sqlite"))
    summaries = []
    for name in ("fresh", "cached"):
        store = RunStore(tmp_path / name)
        store.bind_config({"task": "adder", "arch": "single", "models": ["m"]})
        await run_eval(engine, load_architecture("single", ["m"]), math_problems(6), store)
        summaries.append(summarize(store))
    fresh, cached = summaries
    assert fresh["tokens_per_problem"] > 0 and cached["tokens_per_problem"] == 0
    assert cached["tokens_with_cache_per_problem"] == fresh["tokens_with_cache_per_problem"] == fresh["tokens_per_problem"]


async def test_grader_needs_only_the_problem_and_the_extracted_answer():
    # the reply text was a third, unused parameter: grading depends on the extracted answer alone
    problem = Problem(TaskInput("t", "text", "Capital of France?"), HiddenChecks(answer="Paris"))
    verdict = await Grader().grade(problem, " paris ")
    assert verdict.passed and verdict.reason == "exact match"


async def test_candidates_that_pass_the_public_check_and_fail_the_hidden_one_are_counted(tmp_path):
    """The public assert only tries inc(1): `HALF` passes it and fails the hidden checks, `BAD` fails both."""
    good, half, bad = ("def inc(x):\n    return x + 1\n", "def inc(x):\n    return 2 if x == 1 else 0\n",
                       "def inc(x):\n    return x - 1\n")  # fmt: skip
    replies = [good, half, half, bad, good, half, bad, bad]
    problem = Problem(
        TaskInput("c", "code", "Write inc(x) returning x + 1.", entry_point="inc", public_tests=("assert inc(1) == 2",)),
        HiddenChecks(test_code="def check(candidate):\n    for x in (0, 1, 5):\n        assert candidate(x) == x + 1\n"),
    )
    engine = Engine({"m": ScriptedBackend(lambda r, i: f"```python\n{replies[i % 8]}```")})
    summaries = {}
    for arch in ("sample-8-exec", "single"):
        store = RunStore(tmp_path / arch)
        await run_eval(engine, load_architecture(arch, ["m"]), [problem], store)
        summaries[arch] = summarize(store)
    checked = summaries["sample-8-exec"]
    assert checked["checked_but_wrong"] == (3, 5) and checked["false_positive_rate"] == pytest.approx(0.6)
    assert summaries["single"]["checked_but_wrong"] == (0, 0) and summaries["single"]["false_positive_rate"] is None
    assert "3/5 (60.0%)" in markdown_table(list(summaries.values())) and "| – |" in markdown_table([summaries["single"]])
