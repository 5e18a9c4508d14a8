import time

import pytest

from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate
from thinktank.techniques.verify_exec import VerifyExec
from thinktank.verifiers.python_sandbox import PythonSandbox

CODE = TaskInput(
    "c1", "code", "Write inc(x) returning x + 1.", entry_point="inc", public_tests=("assert inc(1) == 2", "assert inc(0) == 1")
)
SCHEMA = "Table: singer. Columns: Singer_ID (number), Name (text), Country (text), Age (number)"
SQL = TaskInput("s1", "sql", "Names of singers from France?", schema=SCHEMA)

GOOD = "def inc(x):\n    return x + 1\n"
HALF = "def inc(x):\n    return 2 if x == 1 else 0\n"  # passes the first assert only
BAD = "def inc(x):\n    return x - 1\n"


def cand(answer, text=None):
    return Candidate(text or answer or "", answer, "m", "generate")


def engine():
    return Engine({"m": ScriptedBackend(lambda r, i: "unused")})


def count_runs(eng, monkeypatch):
    seen = []
    real = eng.resources.get(PythonSandbox).run_asserts

    async def spy(solution, asserts):
        start = time.monotonic()
        verdict = await real(solution, asserts)
        seen.append((solution, start, time.monotonic()))
        return verdict

    monkeypatch.setattr(eng.resources.get(PythonSandbox), "run_asserts", spy)
    return seen


async def test_score_mode_ranks_passing_above_failing_and_runs_each_answer_once(monkeypatch):
    eng = engine()
    runs = count_runs(eng, monkeypatch)
    candidates = [cand(BAD), cand(HALF), cand(GOOD), cand(BAD, "same program, other words")]
    ctx = eng.context()
    out = await VerifyExec().apply(ctx, CODE, candidates)
    assert [c.answer for c in out] == [GOOD, HALF, BAD, BAD]
    assert out[3].text == "same program, other words"  # ties keep their input order
    assert [c.scores["verify_exec"] for c in out] == [1.0, 0.5, 0.0, 0.0]
    assert out[0].verdicts["verify_exec"]["passed"] is True
    assert "assert inc(0) == 1" in out[1].verdicts["verify_exec"]["reason"]
    assert sorted(r[0] for r in runs) == sorted([BAD, HALF, GOOD])  # the duplicate BAD ran once
    assert min(end for _, _, end in runs) > sorted(start for _, start, _ in runs)[1]  # runs overlapped
    assert ctx.node.notes["passed"] == 1 and ctx.node.notes["distinct_answers"] == 3


async def test_filter_mode_drops_failures_but_never_ends_empty():
    out = await VerifyExec(mode="filter").apply(engine().context(), CODE, [cand(BAD), cand(GOOD), cand(HALF), cand(GOOD)])
    assert [c.answer for c in out] == [GOOD, GOOD]
    ctx, missing = engine().context(), cand(None, "I cannot solve this.")
    out = await VerifyExec(mode="filter", keep_at_least=2).apply(ctx, CODE, [cand(BAD), missing, cand(HALF)])
    assert [c.answer for c in out] == [HALF, BAD]  # nothing passes: the best two stay
    assert ctx.node.notes["dropped"] == 1
    assert missing.verdicts["verify_exec"]["reason"] == "no program found in the reply"


async def test_sql_ranks_rows_over_empty_over_error(monkeypatch, tmp_path):
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path))
    broken = cand("SELECT nme FROM singer")
    empty = cand("SELECT name FROM singer WHERE 1 = 0")
    good = cand("SELECT name FROM singer WHERE country = 'France'")
    out = await VerifyExec().apply(engine().context(), SQL, [broken, empty, good])
    assert out == [good, empty, broken]
    assert "no such column: nme" in broken.verdicts["verify_exec"]["reason"]
    assert empty.scores["verify_exec"] == 0.5 and not empty.verdicts["verify_exec"]["passed"]


async def test_math_passes_through_unchanged():
    candidates = [cand("7"), cand("42")]
    ctx = engine().context()
    out = await VerifyExec(mode="filter").apply(ctx, TaskInput("m1", "math", "6*7?"), candidates)
    assert out == candidates and not candidates[0].scores
    assert "no public checks" in ctx.node.notes["skipped"]


@pytest.mark.parametrize("mode", ["filter", "score"])
async def test_empty_input_gives_empty_output(mode):
    assert await VerifyExec(mode=mode).apply(engine().context(), CODE, []) == []
