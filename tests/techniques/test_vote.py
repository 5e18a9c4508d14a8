import time
from pathlib import Path

import pytest

from thinktank.arch import build_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.engine.resources import Resources
from thinktank.kinds.code import call_inputs, source_key
from thinktank.tasks.base import TaskInput
from thinktank.techniques._equivalence import answer_keys
from thinktank.techniques.base import Candidate
from thinktank.techniques.vote import Vote
from thinktank.verifiers.python_sandbox import PythonSandbox
from thinktank.verifiers.sql import SqlVerifier

MATH = TaskInput("m1", "math", "What is 6*7?")
SCHEMA = "Table: singer. Columns: Singer_ID (number), Name (text), Country (text), Age (number)"
SQL = TaskInput("s1", "sql", "Names of singers older than 30?", schema=SCHEMA)
CODE = TaskInput(
    "c1", "code", "Write inc(x).", entry_point="inc", public_tests=("assert inc(1) == 2", "assert abs(inc(x=5) - 6) < 1e-6")
)

GOOD = "def inc(x):\n    return x + 1\n"
GOOD_OTHER = "def inc(x):\n    total = sum([x, 1])\n    return total\n"
WRONG = "def inc(x):\n    return x * 2\n"  # right on inc(1), wrong on inc(5)
CRASH = "def inc(x):\n    raise ValueError('no')\n"


def cand(text, answer=None):
    return Candidate(text, answer if answer is not None else text, "m", "generate")


def engine(tmp_path: Path | None = None) -> Engine:
    resources = Resources()
    if tmp_path is not None:
        resources.provide(SqlVerifier(k=1, db_dir=tmp_path))
    return Engine({"m": ScriptedBackend(lambda r, i: "unused")}, resources=resources)


async def test_math_majority_is_by_value_not_by_text():
    texts = ["#### 41", "#### 41", "#### 42", "So the answer is 42.0.", "\\boxed{42}", "I don't know"]
    ctx = engine().context()
    out = await Vote().apply(ctx, MATH, [cand(t) for t in texts])
    assert out[0].text == "#### 42"  # the winning group's earliest member represents it
    assert [c.text for c in out[:3]] == ["#### 42", "So the answer is 42.0.", "\\boxed{42}"]
    assert [c.text for c in out[3:5]] == ["#### 41", "#### 41"]
    assert out[0].scores["vote"] == pytest.approx(3 / 6) and out[3].scores["vote"] == pytest.approx(2 / 6)
    notes = ctx.node.notes
    assert [g["size"] for g in notes["groups"]] == [3, 2]
    assert notes["winner"] == 2 and notes["margin"] == pytest.approx(1 / 6, abs=1e-4)


async def test_ties_go_to_the_better_prior_then_to_the_earliest():
    first, second = cand("#### 1"), cand("#### 2")
    out = await Vote().apply(engine().context(), MATH, [first, cand("#### 1.0"), second, cand("#### 2")])
    assert out[0] is first  # equal groups, no prior: earliest wins
    a, b = cand("#### 1"), cand("#### 2")
    a.scores["verify_exec"], b.scores["verify_exec"] = 0.5, 1.0
    out = await Vote().apply(engine().context(), MATH, [a, b])
    assert out[0] is b
    out = await Vote(prior="judge").apply(engine().context(), MATH, [a, b])
    assert out[0] is a  # a named prior that neither carries: back to the earliest


async def test_unanswered_candidates_vote_for_nothing_and_come_last():
    out = await Vote(representatives_only=True).apply(
        engine().context(), MATH, [cand("no idea", ""), cand("#### 5"), cand("#### 5.0"), cand("#### 6")]
    )
    assert [c.text for c in out] == ["#### 5", "#### 6", "no idea"]
    assert out[-1].scores["vote"] == 0.0


async def test_sql_groups_different_queries_with_equal_results(tmp_path):
    queries = [
        "SELECT name FROM singer WHERE age >= 30",  # wrong: includes 30
        "SELECT nme FROM singer",  # fails: votes for nothing, however often it appears
        "SELECT nme FROM singer",
        "SELECT name FROM singer",
        "SELECT name FROM singer WHERE age > 30",
        "SELECT s.Name AS n FROM singer AS s WHERE NOT s.Age <= 30",
    ]
    eng = engine(tmp_path)
    results = [await eng.resources.get(SqlVerifier).execute(q, SCHEMA, hint_sqls=list(dict.fromkeys(queries))) for q in queries]
    assert results[4].rows == results[5].rows and results[0].rows != results[4].rows != results[3].rows
    ctx = eng.context()
    out = await Vote().apply(ctx, SQL, [cand(f"```sql\n{q}\n```", q) for q in queries])
    assert [c.answer for c in out[:2]] == queries[4:6]
    assert [c.answer for c in out[-2:]] == queries[1:3]
    assert ctx.node.notes["no_vote"] == [1, 2] and [g["size"] for g in ctx.node.notes["groups"]] == [2, 1, 1]


async def test_code_clusters_by_behaviour_on_the_public_inputs(monkeypatch):
    eng = engine()
    real, runs = eng.resources.get(PythonSandbox).call_outputs, []

    async def spy(program, entry_point, inputs):
        start = time.monotonic()
        out = await real(program, entry_point, inputs)
        runs.append((program, inputs, start, time.monotonic()))
        return out

    monkeypatch.setattr(eng.resources.get(PythonSandbox), "call_outputs", spy)
    ctx = eng.context()
    out = await Vote().apply(ctx, CODE, [cand(WRONG), cand(CRASH), cand(GOOD), cand(GOOD_OTHER)])
    assert [c.answer for c in out] == [GOOD, GOOD_OTHER, WRONG, CRASH]
    assert [c.scores["vote"] for c in out] == [0.5, 0.5, 0.25, 0.0]
    assert [g["size"] for g in ctx.node.notes["groups"]] == [2, 1] and ctx.node.notes["no_vote"] == [1]
    assert sorted(r[0] for r in runs) == sorted([WRONG, CRASH, GOOD, GOOD_OTHER])  # each distinct program once
    assert all(r[1] == ["1", "x=5"] for r in runs)
    assert min(r[3] for r in runs) > sorted(r[2] for r in runs)[1]  # the runs overlapped


async def test_code_without_public_tests_falls_back_to_normalised_source():
    task = TaskInput("c2", "code", "Write inc(x).", entry_point="inc")
    reformatted = 'def inc( x ):\n    """Add one."""\n    # the obvious way\n    return (x + 1)\n'
    keys = await answer_keys(engine().context(), task, [cand(GOOD), cand(reformatted), cand(GOOD_OTHER)])
    assert keys[0] == keys[1] != keys[2]
    assert source_key("def f(:") == "def f(:"


def test_call_inputs_reads_positional_and_keyword_arguments():
    task = TaskInput("c3", "code", "", entry_point="f", public_tests=("assert f([1, 2], 3) == 6", "assert f(*xs, k=1)", "bad("))
    assert call_inputs(task) == ["[1, 2], 3", "*xs, k=1"]


async def test_vote_ends_an_architecture_built_from_yaml():
    replies = iter(["#### 3", "#### 4", "The answer is 4", "#### 3.5"])
    eng = Engine({"m": ScriptedBackend(lambda r, i: next(replies))})
    arch = build_architecture({"layers": [{"generate": {"n": 4, "temperature": 0.8}}, {"vote": {}}]}, ["m"])
    result = await arch.run(MATH, eng.context())
    assert result.answer.answer == "4" and result.answer.scores["vote1"] == 0.5
