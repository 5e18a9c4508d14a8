from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate
from thinktank.techniques.gen_tests import GenTests, parse_asserts

CODE_PROMPT = 'import math\n\n\ndef inc(x):\n    """Return x plus one."""\n'
TASK = TaskInput("c1", "code", f"Complete:\n```python\n{CODE_PROMPT}```", entry_point="inc", meta={"code_prompt": CODE_PROMPT})

# programs as `extract_code` builds them: the prompt's `import math` comes along
WRONG = "import math\n\ndef inc(x):\n    return x + 2\n"
RIGHT = "import math\n\ndef inc(x):\n    return x + 1\n"
RIGHT_TOO = "import math\n\ndef inc(y):\n    return 1 + y\n"

# Three test-writing replies: good tests, one wrong test (inc(2) == 4, which only WRONG passes), and junk.
# Six distinct usable tests in all: 0 inc(1), 1 inc(5), 2 inc(-1), 3 inc(2) (wrong), 4 inc(10), 5 math.floor.
REPLIES = [
    "Here are tests:\n```python\nassert inc(1) == 2\nassert inc(5) == 6\nassert inc(\n    -1\n) == 0\n```",
    "```python\nassert inc(2) == 4\nassert inc(1) == 2\n```\nassert inc(10) == 11\n",
    "```python\nassert inc(1 == 2\nassert other(3) == 4\nx = inc(3)\nassert inc(y) == 3\nassert math.floor(inc(0.5)) == 1\n",
]


def handler(request, i):
    prompt = request.messages[-1]["content"]
    assert "unit tests" in prompt and "inc" in prompt
    assert "x + 2" not in prompt and "x + 1" not in prompt  # tests come from the task only, never from candidates
    return REPLIES[i % len(REPLIES)]


def cands(*answers):
    return [Candidate(a, a, "m", "generate") for a in answers]


def test_parse_asserts_keeps_valid_entry_point_calls_only():
    tests = [t for reply in REPLIES for t in parse_asserts(reply, "inc", {"math"})]
    assert tests == [
        "assert inc(1) == 2", "assert inc(5) == 6", "assert inc(-1) == 0",
        "assert inc(2) == 4", "assert inc(1) == 2", "assert inc(10) == 11",
        "assert math.floor(inc(0.5)) == 1",
    ]  # fmt: skip
    # without the prompt's `import math`, a test using math would fail for every candidate: dropped
    assert "assert math.floor(inc(0.5)) == 1" not in parse_asserts(REPLIES[2], "inc")
    nested = "```python\ndef test_inc():\n    assert inc(3) == 4, 'three'\n    assert all(inc(k) == k + 1 for k in range(3))\n```"
    assert parse_asserts(nested, "inc") == ["assert inc(3) == 4, 'three'", "assert all((inc(k) == k + 1 for k in range(3)))"]


async def test_dual_agreement_beats_raw_majority():
    engine = Engine({"m": ScriptedBackend(handler)})
    candidates = cands(WRONG, RIGHT, WRONG, RIGHT_TOO, WRONG)  # WRONG is the most frequent program
    ctx = engine.context()
    out = await GenTests(["m"], n_tests=3).apply(ctx, TASK, candidates)
    notes = ctx.node.notes
    assert len(notes["tests"]) == 6 and "assert inc(2) == 4" in notes["tests"]  # deduped, junk dropped
    # RIGHT and RIGHT_TOO agree on the 5 good tests: 2 x 5 = 10; the three WRONGs share 1 test: 3 x 1 = 3
    assert [c.answer for c in out[:2]] == [RIGHT, RIGHT_TOO]
    assert [c.scores["gen_tests"] for c in out] == [10.0, 10.0, 3.0, 3.0, 3.0]
    assert notes["groups"][0] == {"candidates": [1, 3], "tests_passed": [0, 1, 2, 4, 5], "score": 10}
    assert notes["passes"] == ["...1..", "111.11", "...1..", "111.11", "...1.."]  # one row per input candidate
    assert ctx.usage.calls == 3


async def test_pass_matrix_rows_and_unparseable_candidates():
    engine = Engine({"m": ScriptedBackend(handler)})
    candidates = [*cands(WRONG, RIGHT), Candidate("I give up", None, "m", "generate"), *cands("def inc(:\n")]
    ctx = engine.context()
    out = await GenTests(["m"], n_tests=3).apply(ctx, TASK, candidates)
    assert ctx.node.notes["passes"] == ["...1..", "111.11", "......", "......"]
    assert out[0].answer == RIGHT and out[1].answer == WRONG
    assert out[2].scores["gen_tests"] == 0.0


async def test_no_usable_test_leaves_order_unchanged():
    engine = Engine({"m": ScriptedBackend(lambda r, i: "I would test it with a few inputs. assert other(1) == 2")})
    candidates = cands(WRONG, RIGHT)
    ctx = engine.context()
    out = await GenTests(["m"], n_tests=2).apply(ctx, TASK, candidates)
    assert out == candidates and "no usable assert" in ctx.node.notes["skipped"]
    assert ctx.node.notes["tests"] == [] and not candidates[0].scores


async def test_generated_tests_run_in_the_sandbox_not_here(tmp_path):
    marker = tmp_path / "pwned"
    hostile = f"```python\nassert inc(1) == 2 or open({str(marker)!r}, 'w')\n```"
    engine = Engine({"m": ScriptedBackend(lambda r, i: hostile)})
    ctx = engine.context()
    await GenTests(["m"], n_tests=1).apply(ctx, TASK, cands(WRONG, RIGHT))
    assert len(ctx.node.notes["tests"]) == 1 and ctx.node.notes["passes"] == [".", "1"]  # WRONG reaches the open()
    assert not marker.exists()  # the sandbox's filesystem is read-only and private


async def test_test_writers_run_concurrently_across_models():
    backend = ScriptedBackend(handler, delay_s=0.1)
    engine = Engine({"a": backend, "b": backend})
    ctx = engine.context()
    await GenTests(["a", "b"], n_tests=2).apply(ctx, TASK, cands(WRONG, RIGHT))
    calls = [c for node in ctx.node.walk() for c in node.calls]
    assert {c.model for c in calls} == {"a", "b"} and len(calls) == 4
    first_end = min(c.started_s + c.latency_s for c in calls)
    assert all(c.started_s < first_end for c in calls)


async def test_fewer_than_two_distinct_programs_write_no_tests():
    engine = Engine({"m": ScriptedBackend(handler)})
    unanswered = Candidate("I give up", None, "m", "generate")
    ctx = engine.context()
    out = await GenTests(["m"], n_tests=3).apply(ctx, TASK, [unanswered, *cands(RIGHT, RIGHT)])
    assert ctx.usage.calls == 0 and "1 distinct program(s)" in ctx.node.notes["skipped"]
    assert [c.answer for c in out] == [RIGHT, RIGHT, None]  # the order dual agreement would give: programs first
