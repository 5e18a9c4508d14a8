import pytest

from thinktank.arch import build_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Budget, Engine
from thinktank.exceptions import BudgetExceeded, ConfigError
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate
from thinktank.techniques.repair import Repair

TESTS = ("assert inc(1) == 2", "assert inc(3) == 4")
CODE = TaskInput("c1", "code", "Write inc(x) returning x + 1.", entry_point="inc", public_tests=TESTS)
SCHEMA = "Table: singer. Columns: Singer_ID (number), Name (text), Country (text), Age (number)"
SQL = TaskInput("s1", "sql", "List the names of all singers.", schema=SCHEMA)

OFF_BY_TWO = "def inc(x):\n    return x + 2\n"
OFF_BY_THREE = "def inc(x):\n    return x + 3\n"
FIXED = "def inc(x):\n    return x + 1\n"


def fence(code, lang="python"):
    return f"Here you go:\n```{lang}\n{code}```"


def code_model(request, i):
    """Fixes the program only once it has been shown the failing assert and the actual value for x + 3."""
    prompt = request.messages[-1]["content"]
    if "assert inc(1) == 2" in prompt and "Your function returned: 4" in prompt:
        return fence(FIXED)
    return fence(OFF_BY_THREE)


def cand(answer, text=None):
    return Candidate(text or fence(answer or ""), answer, "m", "generate")


async def test_repair_fixes_after_seeing_the_failing_assert_and_stops_there():
    backend = ScriptedBackend(code_model)
    ctx = Engine({"m": backend}).context()
    other = cand(OFF_BY_THREE)
    out = await Repair("m", rounds=5).apply(ctx, CODE, [cand(OFF_BY_TWO), other])
    assert out[0].answer == FIXED and out[0].node == "repair" and out[0].model == "m"
    assert out[0].scores["repair"] == 1.0 and out[0].verdicts["repair"]["passed"]
    assert out[1] is other and other.scores["repair"] == 0.0  # top_k=1: only the first failure is repaired
    # round 1 sees x + 2 (returns 3) and answers x + 3; round 2 sees x + 3 returning 4 and fixes it; no round 3
    assert len(backend.requests) == 2 and out[0].usage.calls == 2
    (node,) = [n for n in ctx.node.children if n.name == "candidate0"]
    assert [r.name for r in node.children] == ["round1", "round2"]
    assert "Your function returned: 3" in node.children[0].notes["feedback"]
    assert node.children[1].notes["passed"] and node.notes["stop"] == "passed in round 2"
    assert ctx.node.notes["fixed"] == [0]


async def test_passing_candidates_cost_no_call():
    backend = ScriptedBackend(code_model)
    good = cand(FIXED)
    out = await Repair("m").apply(Engine({"m": backend}).context(), CODE, [good])
    assert out == [good] and good.node == "generate" and backend.requests == []


async def test_rounds_cap_and_best_attempt_kept():
    backend = ScriptedBackend(lambda r, i: fence("def inc(x):\n    return 2 if x == 1 else 0\n"))  # passes 1 of 2
    ctx = Engine({"m": backend}).context()
    out = await Repair("m", rounds=2).apply(ctx, CODE, [cand("def inc(x):\n    return None\n")])
    assert len(backend.requests) == 2 and out[0].scores["repair"] == 0.5
    assert ctx.node.children[0].notes["stop"] == "still failing after 2 rounds"


async def test_top_k_candidates_are_repaired_in_parallel():
    backend = ScriptedBackend(code_model, delay_s=0.2)
    ctx = Engine({"m": backend}).context()
    start = [cand(OFF_BY_TWO), cand(OFF_BY_TWO, "same program again"), cand(None, "no code at all")]
    out = await Repair("m", rounds=1, top_k=3).apply(ctx, CODE, start)
    assert ctx.node.notes["repaired"] == [0, 2]  # the duplicate answer is repaired once
    calls = [c for n in ctx.node.walk() for c in n.calls]
    assert len(calls) == 2 and max(c.started_s for c in calls) < min(c.started_s + c.latency_s for c in calls)
    missing_prompt = next(r for r in backend.requests if "no code at all" in r.messages[-1]["content"])
    assert "no program found in the reply" in missing_prompt.messages[-1]["content"]
    assert [c.node for c in out] == ["repair", "repair", "generate"]  # repaired ones first, by score


async def test_sql_repair_sees_the_sqlite_error(monkeypatch, tmp_path):
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path))

    def sql_model(request, i):
        prompt = request.messages[-1]["content"]
        return (
            fence("SELECT name FROM singer", "sql") if "no such column: nme" in prompt else fence("SELECT nme FROM singer", "sql")
        )

    backend = ScriptedBackend(sql_model)
    out = await Repair("m", rounds=3).apply(
        Engine({"m": backend}).context(), SQL, [cand("SELECT nme FROM singer", "SELECT nme FROM singer")]
    )
    assert out[0].answer == "SELECT name FROM singer" and out[0].verdicts["repair"]["passed"]
    assert len(backend.requests) == 1


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ("SELECT name FROM singer WHERE 1 = 0", "Checking it gave: the query runs but returns no rows"),
        ("DELETE FROM singer", "Checking it gave: denied: not allowed: delete singer"),
        (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT name FROM singer, c",
            "Checking it gave: timeout: timed out after",
        ),
    ],
)
async def test_sql_repair_feeds_back_no_rows_a_refused_write_or_a_timeout(monkeypatch, tmp_path, bad, said):
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path))
    prompts = []

    def sql_model(request, i):
        prompts.append(request.messages[-1]["content"])
        return fence("SELECT name FROM singer", "sql")

    ctx = Engine({"m": ScriptedBackend(sql_model)}).context()
    out = await Repair("m", rounds=2).apply(ctx, SQL, [cand(bad, fence(bad, "sql"))])
    assert out[0].answer == "SELECT name FROM singer" and out[0].verdicts["repair"]["passed"]
    assert len(prompts) == 1 and said in prompts[0] and bad in prompts[0]


async def test_math_passes_through_without_calls():
    backend = ScriptedBackend(code_model)
    candidates = [cand("41")]
    ctx = Engine({"m": backend}).context()
    out = await Repair("m").apply(ctx, TaskInput("m1", "math", "6*7?"), candidates)
    assert out == candidates and backend.requests == [] and "no public checks" in ctx.node.notes["skipped"]


async def test_repair_loop_stops_at_the_query_budget():
    backend = ScriptedBackend(lambda r, i: fence(OFF_BY_TWO))  # never fixes anything
    ctx = Engine({"m": backend}).context(Budget(max_calls=2))
    with pytest.raises(BudgetExceeded, match="call budget"):
        await Repair("m", rounds=5).apply(ctx, CODE, [cand(OFF_BY_TWO)])
    assert len(backend.requests) == 2


async def test_generate_verify_repair_pipeline_from_a_spec():
    def model(request, i):
        prompt = request.messages[-1]["content"]
        return code_model(request, i) if "Your previous answer" in prompt else fence(OFF_BY_TWO)

    spec = {"layers": [{"generate": {"n": 2}}, {"verify_exec": {"mode": "filter"}}, {"repair": {"rounds": 3}}]}
    arch = build_architecture(spec, ["m"])
    ctx = Engine({"m": ScriptedBackend(model)}).context()
    result = await arch.run(CODE, ctx)
    assert result.answer.answer == FIXED and result.answer.node == "repair2"
    assert [c.node for c in result.candidates] == ["repair2"]  # filter kept one failing program, repair fixed it
    assert ctx.usage.calls == 2 + 2


def test_parameters_are_validated():
    with pytest.raises(ConfigError, match="mode"):
        build_architecture({"layers": [{"verify_exec": {"mode": "vote"}}]}, ["m"])
    with pytest.raises(ConfigError, match="rounds"):
        build_architecture({"layers": [{"repair": {"rounds": 0}}]}, ["m"])
    assert build_architecture({"layers": [{"gen_tests": {}}]}, ["m"]).models == ["m"]
