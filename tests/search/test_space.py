"""The space: define-by-run suggestions, and exported YAML that `load_architecture` accepts."""

import optuna
import pytest

import thinktank.search as search
from thinktank.arch import build_architecture, load_architecture
from thinktank.search.pool import PoolSpec
from thinktank.search.space import Config, PoolLimits, Stage, baseline_params, suggest

LIMITS = PoolLimits.of(PoolSpec(models=("a", "b")), kind="code")


def test_fixed_trial_gives_the_configuration_it_names():
    params = {"cascade": False, "model": "b", "generator": "fixed", "temperature": 0.8, "n": 4, "selection": "codet",
              "n_tests": 2, "tests_model": "a", "repair_rounds": 1, "repair_model": "a"}  # fmt: skip
    config = suggest(optuna.trial.FixedTrial(params), ["a", "b"], LIMITS)
    assert config == Config(stage=Stage(model="b", temperature=0.8, n=4, selection="codet", n_tests=2, tests_model="a",
                                        repair_rounds=1, repair_model="a"))  # fmt: skip
    layers = config.to_spec("x")["layers"]
    assert [next(iter(layer)) for layer in layers] == ["generate", "gen_tests", "repair"]
    greedy = suggest(optuna.trial.FixedTrial({"cascade": False, "model": "a", "generator": "fixed", "temperature": 0.0,
                                              "repair_rounds": 0}), ["a", "b"], LIMITS)  # fmt: skip
    assert greedy.to_spec("g")["layers"] == [{"generate": {"models": ["a"], "n": 1, "temperature": 0.0, "max_tokens": 512}}]


def test_every_suggested_configuration_exports_a_loadable_architecture(tmp_path):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), directions=["maximize", "minimize"])
    seen = {}
    for _ in range(300):
        trial = study.ask()
        config = suggest(trial, ["a", "b"], LIMITS)
        seen[config.key()] = config
        study.tell(trial, [0.0, 0.0])
    assert len(seen) > 250  # a large space: random trials rarely repeat
    kinds = {(c.cascade is not None, c.stage.adaptive is not None, c.stage.selection) for c in seen.values()}
    assert len(kinds) >= 10
    for i, config in enumerate(list(seen.values())[:60]):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(config.to_yaml())
        arch = load_architecture(str(path), ["a"])
        assert set(arch.models) <= {"a", "b"} and arch.name == f"search-{config.short_id()}"
        assert Config.model_validate_json(config.model_dump_json()) == config


def test_exec_vote_prior_names_the_verify_exec_node_and_cascade_names_both_models():
    stage = Stage(model="a", temperature=0.8, n=8, selection="exec_vote")
    arch = build_architecture(Config(stage=stage).to_spec(), ["a"])
    vote = arch.layers[2][0]
    assert vote.technique.prior == arch.layers[1][0].name == "verify_exec1"
    cascade = Config.model_validate({"stage": stage.model_dump(), "cascade": {"signal": "public_pass", "threshold": 1.0,
                                     "stage": {"model": "b", "temperature": 0.0}}})  # fmt: skip
    assert build_architecture(cascade.to_spec(), ["a"]).models == ["a", "b"]
    assert "cascade[" in cascade.label()


def test_math_tasks_get_no_execution_based_choices():
    limits = PoolLimits.of(PoolSpec(models=("a",)), kind="math")
    assert limits.selections == ("vote", "rank") and not limits.exec
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(100):
        trial = study.ask()
        config = suggest(trial, ["a"], limits)
        assert config.stage.repair_rounds == 0 and config.cascade is None
        assert config.stage.selection in ("first", "vote", "rank")
        assert not (config.stage.adaptive and config.stage.adaptive.first_pass)
        study.tell(trial, 0.0)


def test_baselines_are_valid_trials():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for params in baseline_params(["a", "b"], LIMITS):
        study.enqueue_trial(params)
    configs = []
    for _ in baseline_params(["a", "b"], LIMITS):
        trial = study.ask()
        configs.append(suggest(trial, ["a", "b"], LIMITS))
        study.tell(trial, [0.0, 0.0])
    assert [c.label() for c in configs] == ["1×a@0", "8×a@0.8 vote", "8×a@0.8 exec_vote", "1×b@0", "8×b@0.8 vote",
                                            "8×b@0.8 exec_vote"]  # fmt: skip


@pytest.mark.parametrize("module", [search])
def test_all_is_sorted(module):
    def isort_key(name):
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert module.__all__ == sorted(module.__all__, key=isort_key)
    assert all(getattr(module, name) is not None for name in module.__all__)


def test_greedy_models_are_only_greedy_generators():
    spec = PoolSpec(models=("a", "big"), greedy_models=("big",))
    assert spec.temperatures_of("big") == (0.0,) and spec.temperatures_of("a") == (0.0, 0.8)
    assert spec.helper_models == ("a",)
    limits = PoolLimits.of(spec, kind="code")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), directions=["maximize", "minimize"])
    seen = []
    for _ in range(300):
        trial = study.ask()
        seen.append(suggest(trial, ["a", "big"], limits))
        study.tell(trial, [0.0, 0.0])
    stages = [c.stage for c in seen] + [c.cascade.stage for c in seen if c.cascade]
    big = [s for s in stages if s.model == "big"]
    assert big and all(s.temperature == 0.0 and s.n == 1 and s.adaptive is None for s in big)
    assert all("big" not in (s.repair_model, s.tests_model, s.judge_model) for s in stages)
    assert any(c.cascade and c.cascade.stage.model == "big" for c in seen)  # still offered as the stronger stage
    for params in baseline_params(["a", "big"], limits):
        suggest(optuna.trial.FixedTrial(params), ["a", "big"], limits)


def test_zero_repair_rounds_keeps_repair_out_of_the_space():
    limits = PoolLimits.of(PoolSpec(models=("a", "b"), repair_rounds=0), kind="code")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2), directions=["maximize", "minimize"])
    stages = []
    for _ in range(200):
        trial = study.ask()
        config = suggest(trial, ["a", "b"], limits)
        stages += [config.stage] + ([config.cascade.stage] if config.cascade else [])
        study.tell(trial, [0.0, 0.0])
    assert {s.repair_rounds for s in stages} == {0}
    assert len({s.selection for s in stages}) >= 4  # the rest of the space is intact
