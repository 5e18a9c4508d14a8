import pytest

from thinktank.arch import build_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Budget, Engine
from thinktank.exceptions import ConfigError
from thinktank.tasks.base import TaskInput
from thinktank.techniques.cascade import Cascade

MATH = TaskInput("m1", "math", "What is 6*7?")
CODE = TaskInput("c1", "code", "Write inc(x).", entry_point="inc", public_tests=("assert inc(1) == 2", "assert inc(5) == 6"))


def stage(model, n, *extra):
    return {"layers": [{"generate": {"models": [model], "n": n, "temperature": 0.8}}, *extra]}


def backends(cheap_reply, big_reply="#### 42"):
    cheap, big = ScriptedBackend(lambda r, i: cheap_reply(r)), ScriptedBackend(lambda r, i: big_reply)
    return cheap, big, Engine({"cheap": cheap, "big": big})


def cascade_arch(signal="vote_share", threshold=0.75, cheap_extra=({"vote": {}},)):
    spec = {
        "layers": [
            {
                "cascade": {
                    "signal": signal,
                    "thresholds": [threshold],
                    "stages": [stage("cheap", 4, *cheap_extra), stage("big", 2)],
                }
            }
        ]
    }
    return build_architecture(spec, ["cheap"])


async def test_escalates_when_the_cheap_stage_disagrees():
    cheap, big, eng = backends(lambda r: f"#### {r.seed}")  # four different answers: leader share 0.25
    ctx = eng.context()
    result = await cascade_arch().run(MATH, ctx)
    assert result.answer.answer == "42" and result.answer.model == "big"
    node = ctx.node.children[0]
    assert node.notes["answered_by"] == 1
    first = node.notes["stages"][0]
    assert first["signal"] == 0.25 and first["threshold"] == 0.75 and first["escalated"] is True
    stages = {child.name: child for child in node.children}
    assert set(stages) == {"stage0", "stage1"}
    assert stages["stage0"].usage.calls == 4 and stages["stage1"].usage.calls == 2
    assert node.notes["stages"][1]["usage"]["calls"] == 2 and first["usage"]["calls"] == 4
    assert len(cheap.requests) == 4 and len(big.requests) == 2


async def test_answers_cheaply_when_the_cheap_stage_agrees():
    cheap, big, eng = backends(lambda r: "#### 41" if r.seed else "The answer is 41.0")
    ctx = eng.context()
    result = await cascade_arch().run(MATH, ctx)
    assert result.answer.answer in ("41", "41.0") and big.requests == [] and len(cheap.requests) == 4
    node = ctx.node.children[0]
    assert node.notes["answered_by"] == 0 and node.notes["stages"][0]["signal"] == 1.0
    assert [child.name for child in node.children] == ["stage0"]


async def test_public_pass_signal_runs_the_top_program():
    wrong, right = "```python\ndef inc(x):\n    return x * 2\n```", "```python\ndef inc(x):\n    return x + 1\n```"
    _, big, eng = backends(lambda r: wrong, right)
    result = await cascade_arch("public_pass", 1.0).run(CODE, eng.context())
    assert "x + 1" in result.answer.answer and len(big.requests) == 2
    notes = result.trace.children[0].notes
    assert notes["stages"][0]["signal"] == 0.5 and notes["answered_by"] == 1


async def test_judge_score_signal_reads_the_rank_node():
    def cheap_reply(request):
        return "Score: 8" if "Rate how well" in request.messages[-1]["content"] else "#### 41"

    _, big, eng = backends(cheap_reply)
    rank = ({"rank": {"model": "cheap", "mode": "pointwise"}},)
    high = await cascade_arch("judge_score", 7.0, rank).run(MATH, eng.context())
    assert high.answer.answer == "41" and big.requests == []
    low = await cascade_arch("judge_score", 9.0, rank).run(MATH, eng.context())
    assert low.answer.answer == "42" and low.trace.children[0].notes["stages"][0]["signal"] == 8.0


async def test_a_failing_cheap_stage_escalates():
    _, big, eng = backends(lambda r: "#### 1")
    spec = {"layers": [{"cascade": {"thresholds": [0.5], "stages": [stage("nobody", 2), stage("big", 1)]}}]}
    ctx = eng.context()
    result = await build_architecture(spec, ["cheap"]).run(MATH, ctx)
    assert result.answer.answer == "42" and len(big.requests) == 1
    first = ctx.node.children[0].notes["stages"][0]
    assert first["escalated"] and "UnknownModelError" in first["error"]


async def test_budget_cut_in_the_big_stage_keeps_the_cheap_answer():
    _, _, eng = backends(lambda r: f"#### {r.seed}")
    ctx = eng.context(Budget(max_calls=4))
    result = await cascade_arch().run(MATH, ctx)
    notes = ctx.node.children[0].notes
    assert notes["budget_cut"] and notes["answered_by"] == 0 and result.answer.model == "cheap"


def test_default_models_fill_stages_and_the_architecture_lists_every_model():
    spec = {"layers": [{"cascade": {"thresholds": [0.5], "stages": [{"layers": [{"generate": {}}]}, stage("big", 1)]}}]}
    assert build_architecture(spec, ["cheap"]).models == ["cheap", "big"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"thresholds": [0.5, 0.5], "stages": [stage("a", 1), stage("b", 1)]}, "2 stages need 1 thresholds"),
        ({"thresholds": [], "stages": [stage("a", 1)]}, "at least two stages"),
        ({"thresholds": [0.5], "stages": [stage("a", 1), {"layers": [{"teleport": {}}]}]}, "unknown technique 'teleport'"),
        ({"thresholds": [0.5], "stages": [stage("a", 1), stage("b", 1)], "signal": "vibes"}, "parameter 'signal'"),
    ],
)
def test_bad_cascades_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        build_architecture({"layers": [{"cascade": params}]}, ["m"])


def test_python_construction_checks_the_thresholds():
    with pytest.raises(ValueError, match="thresholds"):
        Cascade([build_architecture(stage("a", 1), ["m"]), build_architecture(stage("b", 1), ["m"])], [])


async def test_python_construction_takes_built_stages():
    _, big, eng = backends(lambda r: "#### 41")
    built = [build_architecture(stage("cheap", 2, {"vote": {}}), ["m"]), build_architecture(stage("big", 1), ["m"])]
    cascade = Cascade(built, [0.75])
    assert cascade.stages == built and cascade.models == ["cheap", "big"]
    cascade.name = "c"
    [answer, *_] = await cascade.apply(eng.context(), MATH, [])
    assert answer.answer == "41" and big.requests == []
    with pytest.raises(ConfigError, match="cascade stage 1: an architecture needs"):
        build_architecture({"layers": [{"cascade": {"thresholds": [0.5], "stages": [stage("a", 1), 7]}}]}, ["m"])
    with pytest.raises(ConfigError, match="parameter 'stages'"):  # neither a list of YAML stages nor built ones
        build_architecture({"layers": [{"cascade": {"thresholds": [0.5], "stages": "two"}}]}, ["m"])


def test_the_cascades_own_models_are_its_stages_defaults():
    spec = {"layers": [{"cascade": {"models": ["own"], "thresholds": [0.5], "stages": [{"layers": [{"generate": {}}]}] * 2}}]}
    assert build_architecture(spec, ["run"]).models == ["own"]


@pytest.mark.parametrize(("signal", "value"), [("vote_share", 0.75), ("vote_margin", 0.5)])
async def test_vote_margin_is_the_leaders_share_minus_the_runner_ups(signal, value):
    _, _, eng = backends(lambda r: "#### 7" if r.seed == 3 else "#### 41")  # three of four agree: share 0.75, margin 0.5
    ctx = eng.context()
    result = await cascade_arch(signal, 0.6).run(MATH, ctx)
    first = ctx.node.children[0].notes["stages"][0]
    assert first["signal"] == value and first["escalated"] is (value < 0.6)
    assert result.answer.model == ("big" if value < 0.6 else "cheap")
