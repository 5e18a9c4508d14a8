import pytest

from thinktank.arch import Architecture, Node, build_architecture, load_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Budget, Engine
from thinktank.exceptions import ConfigError
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, Technique

TASK = TaskInput("p1", "math", "What is 6*7? End with #### <number>.")


def write(tmp_path, text):
    path = tmp_path / "arch.yaml"
    path.write_text(text)
    return str(path)


def test_preset_single_loads_with_default_model():
    arch = load_architecture("single", ["m"])
    assert arch.name == "single" and arch.models == ["m"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nlayers:\n  - generate: {n: 2}\n  - teleport: {}\n", r"arch.yaml:4: unknown technique 'teleport'"),
        (
            "name: x\nlayers:\n  - generate:\n      n: lots\n",
            r"arch.yaml:4: parameter 'n' of Generate: Input should be a valid integer",
        ),
        (
            "name: x\nlayers:\n  - generate:\n      temperature: 0.5\n      n: 0\n",
            r"arch.yaml:5: parameter 'n' .*greater than or equal to 1",
        ),
        ("name: x\nlayers:\n  - generate: {bogus: 1}\n", r"arch.yaml:3: parameter 'bogus' of Generate: Unexpected keyword"),
        ("name: x\nlayers: [\n", r"malformed YAML"),
        ("name: x\n", r"needs a non-empty `layers:` list"),
        ("layers:\n  - generate: {}\n    vote: {}\n", r"arch.yaml:2: each node is one"),
    ],
)
def test_yaml_errors_name_file_line_and_field(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_architecture(write(tmp_path, text), ["m"])


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="presets: .*single"):
        load_architecture("nope", ["m"])


async def test_layer_nodes_run_in_parallel_and_concatenate():
    backend = ScriptedBackend(lambda r, i: f"{r.model} says #### 42", delay_s=0.2)
    engine = Engine({"a": backend, "b": backend})
    spec = {"name": "ens", "layers": [[{"generate": {"models": ["a"], "n": 2}}, {"generate": {"models": ["b"], "n": 2}}]]}
    arch = build_architecture(spec, ["a"])
    ctx = engine.context()
    result = await arch.run(TASK, ctx)
    calls = [call for node in ctx.node.walk() for call in node.calls]
    assert [c.model for c in result.candidates] == ["a", "a", "b", "b"]
    assert result.answer.answer == "42"
    first_end = min(c.started_s + c.latency_s for c in calls)
    assert all(c.started_s < first_end for c in calls)  # all four calls overlapped
    assert {child.name for child in ctx.node.children} == {"generate0", "generate0.1"}
    assert ctx.usage.calls == 4


class Boom(Technique):
    async def apply(self, ctx, task, candidates):
        raise RuntimeError("judge fell over")


async def test_failing_node_is_recorded_and_skips_or_fails_as_configured():
    engine = Engine({"m": ScriptedBackend(lambda r, i: "#### 1")})
    gen = load_architecture("single", ["m"]).layers[0]
    skip = Architecture("a", [gen, [Node("boom", Boom(), on_error="skip")]])
    ctx = engine.context()
    result = await skip.run(TASK, ctx)
    assert result.answer.answer == "1"
    assert ctx.node.children[1].error == "RuntimeError: judge fell over"
    fail = Architecture("b", [gen, [Node("boom", Boom(), on_error="fail")]])
    with pytest.raises(RuntimeError, match="judge fell over"):
        await fail.run(TASK, engine.context())


async def test_budget_cut_returns_best_so_far():
    engine = Engine({"m": ScriptedBackend(lambda r, i: "word " * 20 + "#### 7")})
    arch = build_architecture({"layers": [{"generate": {"n": 1}}, {"generate": {"n": 4, "temperature": 0.9}}]}, ["m"])
    result = await arch.run(TASK, engine.context(Budget(max_tokens=30)))
    assert result.budget_cut and "budget" in result.error
    assert result.answer is not None and result.answer.answer == "7"


async def test_empty_result_is_an_error_not_a_silent_answer():
    class Nothing(Technique):
        async def apply(self, ctx, task, candidates):
            return []

    result = await Architecture("x", [[Node("n", Nothing())]]).run(TASK, Engine({}).context())
    assert result.answer is None and result.error == "the architecture produced no candidate"


def test_candidate_roundtrip():
    c = Candidate("t", "a", "m", "n")
    assert c.to_dict()["usage"]["calls"] == 0


class Mark(Technique):
    """Scores its input candidates in place, as `verify_exec`/`rank` do."""

    async def apply(self, ctx, task, candidates):
        for c in candidates:
            c.scores[self.name] = 1.0
            c.verdicts[self.name] = {"passed": True}
        return candidates


async def test_nodes_of_one_layer_do_not_share_candidate_scores():
    engine = Engine({"m": ScriptedBackend(lambda r, i: "#### 1")})
    gen = load_architecture("single", ["m"]).layers[0]
    layer = [Node("a", Mark()), Node("b", Mark())]
    for node in layer:
        node.technique.name = node.name
    result = await Architecture("x", [gen, layer]).run(TASK, engine.context())
    a, b = result.candidates
    assert a.scores == {"a": 1.0} and b.scores == {"b": 1.0}
    assert set(a.verdicts) == {"a"} and set(b.verdicts) == {"b"}
    assert a.scores is not b.scores and a.verdicts is not b.verdicts


def test_servable_presets_skip_only_local_presets_lacking_a_pack(monkeypatch):
    from thinktank.arch import preset_names, servable_presets
    from thinktank.models.packs import ModelPack

    monkeypatch.setattr(ModelPack, "is_pulled", property(lambda self: False))
    served, skipped = servable_presets(["m"], local=True)
    assert sorted([a.name for a in served] + list(skipped)) == preset_names()
    assert skipped and all(missing for missing in skipped.values())
    assert "single" in {a.name for a in served}
    remote, none_skipped = servable_presets(["m"], local=False)
    assert [a.name for a in remote] == preset_names() and none_skipped == {}
