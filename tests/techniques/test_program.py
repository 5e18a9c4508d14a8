"""`program` (PAL/PoT): every verdict a program can earn, voting by executed value, self-verification, and how
cascade, adaptive and repair treat program candidates. Programs run in the real sandbox; the model is scripted."""

import pytest

from thinktank.arch import build_architecture, load_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.exceptions import ConfigError
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate
from thinktank.techniques.program import Program, read_program
from thinktank.techniques.repair import Repair
from thinktank.techniques.vote import Vote
from thinktank.verifiers.python_sandbox import PythonSandbox, SandboxLimits
from thinktank.verifiers.values import number_text

MATH = TaskInput("m1", "math", "Tom has 6 bags of 7 marbles. How many marbles?")


def fence(code, prose=""):
    return f"{prose}\n```python\n{code}```\n" if prose else f"```python\n{code}```"


RIGHT = fence("def solution():\n    bags = 6\n    per_bag = 7\n    return bags * per_bag\n")
RIGHT_OTHER = fence("def solution():\n    total = 0\n    for _ in range(6):\n        total += 7.0\n    return total\n")
WRONG = fence("def solution():\n    return 6 + 7\n")
VERDICT_PROGRAMS = {
    "ok": (RIGHT, True, "42", "solution() returned 42"),
    "float noise": (fence("def solution():\n    return 0.1 + 0.2\n"), True, "0.3", "returned 0.3"),
    "fraction": (fence("from fractions import Fraction\ndef solution():\n    return Fraction(3, 4)\n"), True, "3/4", "3/4"),
    "numeric str": (fence("def solution():\n    return '$1,200'\n"), True, "1200", "1200"),
    "raised": (
        fence("def solution():\n    apples = 0\n    return 10 / apples\n"),
        False,
        None,
        "the program raised ZeroDivisionError: division by zero",
    ),
    "timeout": (fence("def solution():\n    while True:\n        pass\n"), False, None, "solution() never returned ("),
    "printed": (
        fence("def solution():\n    print(6 * 7)\n"),
        False,
        None,
        "solution() printed '42' but returned None: return the answer instead of printing it",
    ),
    "non_number": (
        fence("def solution():\n    return 'forty-two'\n"),
        False,
        None,
        "solution() returned 'forty-two' (a str), not a number",
    ),
    "list": (fence("def solution():\n    return [6, 7]\n"), False, None, "returned [6, 7] (a list), not a number"),
    "no_program": ("Six bags of seven is 42.\n#### 42", False, None, "no program in the reply"),
    "no solution()": (fence("def answer():\n    return 42\n"), False, None, "the program defines no function solution()"),
}
STATUS = {"float noise": "ok", "fraction": "ok", "numeric str": "ok", "list": "non_number", "no solution()": "no_program"}


def engine(reply, **backends):
    eng = Engine({"m": ScriptedBackend(reply), **backends})
    eng.resources.provide(PythonSandbox(SandboxLimits(wall_s=3, cpu_s=1)))  # a program that never returns costs 1 s
    return eng


@pytest.mark.parametrize("case", list(VERDICT_PROGRAMS))
async def test_each_outcome_gets_a_readable_verdict(case):
    reply, passed, value, reason = VERDICT_PROGRAMS[case]
    ctx = engine(lambda r, i: reply).context()
    (cand,) = await Program(["m"]).apply(ctx, MATH, [])
    verdict = cand.verdicts["program"]
    assert verdict["passed"] is passed and cand.answer == value and reason in verdict["reason"], verdict
    assert verdict["details"]["status"] == STATUS.get(case, case) and cand.scores["program"] == float(passed)
    assert cand.text == reply and cand.program == read_program(reply) and cand.usage.calls == 1
    if case == "raised":
        assert "10 / apples" in verdict["details"]["traceback"]


def test_returned_values_become_answers_and_others_say_what_they_are():
    assert number_text("12.000000000000002") == ("12", "float") and number_text("1e-05") == ("0.00001", "float")
    assert number_text("np.float64(2.5)") == ("2.5", "float") and number_text("Decimal('1.50')") == ("1.5", "Decimal")
    assert number_text("True") == (None, "a bool") and number_text("nan") == (None, "a float that is nan")
    assert number_text("<object object at 0x7f>") == (None, "an object") and number_text("None") == (None, "None")


async def test_programs_vote_by_executed_value_and_with_prose_answers():
    replies = {0: RIGHT, 1: WRONG, 2: RIGHT_OTHER, 3: VERDICT_PROGRAMS["raised"][0], 4: RIGHT}
    eng = engine(lambda r, i: replies[r.seed])
    sandbox, ran = eng.resources.get(PythonSandbox), []
    real = sandbox.call

    async def spy(program, entry_point, args=""):
        ran.append(program)
        return await real(program, entry_point, args)

    sandbox.call = spy
    ctx = eng.context()
    programs = await Program(["m"], n=5, temperature=0.8).apply(ctx.child("program0"), MATH, [])
    assert [c.answer for c in programs] == ["42", "13", "42", None, "42"]
    prose = [Candidate("6 * 7 = 42\n#### 42.0", "42.0", "m", "generate"), Candidate("#### 13", "13", "m", "generate")]
    out = await Vote().apply(ctx.child("vote"), MATH, [*programs, *prose])
    groups = ctx.node.children[1].notes["groups"]
    assert [g["size"] for g in groups] == [4, 2] and out[0].answer == "42"  # 42 from RIGHT twice, RIGHT_OTHER, prose
    assert out[-1].answer is None and out[-1].scores["vote"] == 0.0  # the raising program casts no vote
    assert sorted(ran) == sorted(read_program(replies[i]) for i in range(4))  # each distinct program ran once
    assert ctx.node.children[0].notes == {"statuses": {"ok": 4, "raised": 1}, "distinct_programs": 4, "answered": 4}


async def test_draw_gives_the_samples_apply_would_with_the_same_seeds():
    seen = []

    def reply(request, i):
        seen.append(request.seed)
        return fence(f"def solution():\n    return {request.seed}\n")

    ctx = engine(reply).context()
    whole = await Program(["m"], n=4, temperature=0.8, seed=10).apply(ctx, MATH, [])
    part = await Program(["m"], n=4, temperature=0.8, seed=10).draw(ctx, MATH, [], 2, 2)
    assert [c.answer for c in whole] == ["10", "11", "12", "13"] and [c.answer for c in part] == ["12", "13"]
    assert sorted(seen) == [10, 11, 12, 12, 13, 13]


@pytest.mark.parametrize(
    ("prose", "answer", "score", "agrees"),
    [
        ("6 * 7 = 42.\n#### 42", "42", 1.0, True),
        ("6 + 7 = 13.\n#### 13", None, 0.0, False),
        ("Let me compute it.", "42", 0.5, None),
        ("To find the answer, multiply 6 by 7.", "42", 0.5, None),  # numbers, but no stated answer
        ("So the answer is 42.", "42", 1.0, True),
    ],
)
async def test_self_verification_abstains_when_prose_and_program_disagree(prose, answer, score, agrees):
    reply = fence("def solution():\n    return 6 * 7\n", prose)
    requests = []
    ctx = engine(lambda r, i: requests.append(r) or reply).context()
    (cand,) = await Program(["m"], check_text=True).apply(ctx, MATH, [])
    details = cand.verdicts["program"]["details"]
    assert cand.answer == answer and cand.scores["program"] == score and details["agrees"] is agrees
    assert details["value"] == "42" and "#### <answer>" in requests[0].messages[-1]["content"]
    if agrees is False:
        assert details["status"] == "disagrees" and details["text_answer"] == "13"
        assert "returned 42 but the reasoning says 13" in cand.verdicts["program"]["reason"]


def disagreeing(request, i):
    """Even samples: prose and program agree on 42; odd samples: the prose says 13."""
    return fence("def solution():\n    return 6 * 7\n", "#### 42" if request.seed % 2 == 0 else "#### 13")


async def test_disagreement_escalates_a_cascade():
    stage = {"layers": [{"program": {"n": 4, "temperature": 0.8, "check_text": True}}, {"vote": {}}]}
    big = {"layers": [{"program": {"models": ["big"], "n": 1}}]}
    spec = {"layers": [{"cascade": {"signal": "vote_share", "thresholds": [0.75], "stages": [stage, big]}}]}
    for reply, answered_by, share in ((disagreeing, 1, 0.5), (lambda r, i: disagreeing(r.with_(seed=0), i), 0, 1.0)):
        eng = engine(reply, big=ScriptedBackend(lambda r, i: RIGHT_OTHER))
        ctx = eng.context()
        result = await build_architecture(spec, ["m"]).run(MATH, ctx)
        notes = ctx.node.children[0].notes
        assert notes["answered_by"] == answered_by and notes["stages"][0]["signal"] == share
        assert result.answer.answer == "42" and result.answer.model == ("big" if answered_by else "m")


async def test_disagreement_keeps_adaptive_sampling():
    spec = {"layers": [{"adaptive": {"max_n": 8, "wave": 2, "stop_confidence": 0.9,
                                     "generator": [{"layers": [{"program": {"temperature": 0.8, "check_text": True}}]}]}}]}  # fmt: skip
    waves = {}
    for name, reply in (("agree", lambda r, i: disagreeing(r.with_(seed=0), i)), ("disagree", disagreeing)):
        ctx = engine(reply).context()
        result = await build_architecture(spec, ["m"]).run(MATH, ctx)
        assert result.answer.answer == "42"
        waves[name] = ctx.node.children[0].notes["waves"]
    assert waves == {"agree": 2, "disagree": 3}  # 0.9 needs 3 votes to none; abstentions add no vote, so 3 waves


async def test_repair_fixes_a_raising_program_with_the_traceback_and_keeps_prose_as_is():
    def model(request, i):
        prompt = request.messages[-1]["content"]
        if "Your previous answer" not in prompt:
            return VERDICT_PROGRAMS["raised"][0]
        assert "ZeroDivisionError: division by zero" in prompt and "10 / apples" in prompt and "solution()" in prompt
        return RIGHT

    ctx = engine(model).context()
    programs = await Program(["m"]).apply(ctx.child("program0"), MATH, [])
    prose = Candidate("#### 41", "41", "m", "generate")
    out = await Repair("m", rounds=2).apply(ctx.child("repair1"), MATH, [prose, *programs])
    assert [c.answer for c in out] == ["42", "41"] and out[0].program == read_program(RIGHT) and out[0].node == "repair"
    assert out[0].verdicts["repair"]["passed"] and "repair" not in out[1].scores and out[1] is prose
    node = ctx.node.children[1]
    assert node.notes["fixed"] == [1] and node.children[0].notes["stop"] == "passed in round 1"
    assert out[0].usage.calls == 1 and ctx.usage.calls == 2


@pytest.mark.parametrize("case", ["printed", "non_number", "timeout"])
async def test_repair_feeds_back_what_a_program_did_instead_of_returning_a_number(case):
    bad, _, _, reason = VERDICT_PROGRAMS[case]
    prompts = []

    def model(request, i):
        prompts.append(request.messages[-1]["content"])
        return bad if len(prompts) == 1 else RIGHT

    ctx = engine(model).context()
    programs = await Program(["m"]).apply(ctx, MATH, [])
    out = await Repair("m").apply(ctx, MATH, programs)
    assert out[0].answer == "42" and reason in prompts[1] and bad.split("```python\n")[1].split("```")[0] in prompts[1]


async def test_repair_costs_nothing_when_every_program_returned_a_number():
    backend = ScriptedBackend(lambda r, i: RIGHT)
    eng = Engine({"m": backend})
    programs = await Program(["m"], n=2, temperature=0.8).apply(eng.context(), MATH, [])
    out = await Repair("m").apply(eng.context(), MATH, programs)
    assert [c.answer for c in out] == ["42", "42"] and len(backend.requests) == 2


@pytest.mark.parametrize("preset", ["pal-8-vote", "pal-cot-8-vote", "pal-check-adaptive"])
async def test_math_presets_run_end_to_end(preset):
    def model(request, i):
        if "solution()" not in request.messages[-1]["content"]:
            return "6 * 7 = 42\n#### 42"  # the mixed preset's prose samples
        return fence("def solution():\n    return 6 * 7\n", "6 * 7 = 42.\n#### 42")

    ctx = engine(model).context()
    result = await load_architecture(preset, ["m"]).run(MATH, ctx)
    assert result.answer.answer == "42" and result.error is None
    programs = [c for c in result.candidates if c.program is not None]
    assert programs and all(c.verdicts[c.node]["details"]["value"] == "42" for c in programs)
    assert ctx.usage.calls == len([call for node in ctx.node.walk() for call in node.calls]) > 0


def test_parameters_are_validated():
    with pytest.raises(ConfigError, match="parameter 'n' of Program"):
        build_architecture({"layers": [{"program": {"n": 0}}]}, ["m"])
    with pytest.raises(ConfigError, match="at least one model"):
        build_architecture({"layers": [{"program": {"models": []}}]}, ["m"])


def test_the_calls_are_generates_on_the_instructed_prompt_so_cache_keys_are_unchanged():
    from thinktank.engine.cache import cache_key
    from thinktank.techniques.generate import Generate, deal
    from thinktank.techniques.program import INSTRUCTION
    from thinktank.types import GenerationRequest

    program = Program(["a", "b"], n=3, temperature=0.7, top_p=0.9, max_tokens=200, system="be exact", seed=5)
    requests = program.generate.draws(
        program.instructed(MATH), 1, 4
    )  # samples 1..4: b gets 1, 3 (its 0, 1), a gets 2, 4 (its 1, 2)
    messages = [{"role": "system", "content": "be exact"}, {"role": "user", "content": f"{MATH.prompt}\n\n{INSTRUCTION}"}]
    expected = [  # the requests program built itself before it composed a Generate
        GenerationRequest(messages, "b", n=2, temperature=0.7, top_p=0.9, max_tokens=200, seed=5),
        GenerationRequest(messages, "a", n=2, temperature=0.7, top_p=0.9, max_tokens=200, seed=6),
    ]
    assert requests == expected and program.messages(MATH) == messages
    assert [cache_key(r, 0) for r in requests] == [cache_key(r, 0) for r in expected]
    assert deal(["a", "b"], 1, 4) == {"b": [0, 1], "a": [1, 2]} and deal(["a"], 2, 0) == {}
    plain = Generate(["a"], n=3, seed=5)
    assert plain.request(MATH, "a") == plain.draws(MATH, 0, 3)[0]  # apply's call is the first three draws
