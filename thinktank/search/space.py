"""The search space: a `Config` per architecture the search can propose, Optuna's define-by-run `suggest`, and the YAML.

    config = suggest(trial, ["a", "b"], PoolLimits.of(spec, kind="code"))
    Path("chosen.yaml").write_text(config.to_yaml("search-best"))   # runs with `thinktank eval --arch chosen.yaml`

A configuration is one stage — `generate` (model, n, temperature) and a selection (first, vote, exec_vote = verify_exec
filter then vote, codet = gen_tests, rank = pointwise judge), or `adaptive` sampling (wave, max_n, stop_confidence,
first_pass) — optionally followed by `repair` (rounds, model), optionally escalating through a two-stage `cascade`
(signal, threshold, a second stage on another model). Every role picks its model (LLMSelector's idea). Parameters are
categorical grids so equal configurations meet again (the study evaluates each once).

Not in the space, on purpose: `fuse` and `critique` (their output depends on the exact candidate subset they are shown,
so a pool cannot replay them), pairwise/listwise `rank` (same), and SQL tasks (vote keys depend on the candidate set).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel

from thinktank.kinds import kind_named
from thinktank.search.pool import PoolSpec

if TYPE_CHECKING:
    import optuna

__all__ = ["NOT_REPLAYABLE", "Adaptive", "Cascade", "Config", "PoolLimits", "Stage", "baseline_params", "suggest"]

NOT_REPLAYABLE = (
    "fuse and critique (and pairwise/listwise rank) are not in the space: their output depends on the exact candidate"
    " subset they see, which a pool of independent samples cannot replay"
)

Selection = Literal["first", "vote", "exec_vote", "codet", "rank"]
Signal = Literal["public_pass", "vote_share"]
N_CHOICES = (1, 2, 4, 8, 16)
TEST_CHOICES = (1, 2, 4, 8)
WAVES = (1, 2, 4)
ADAPTIVE_MAX_N = (4, 8, 16)
STOP_CONFIDENCE = (0.75, 0.85, 0.95, 0.99)
THRESHOLDS: dict[str, tuple[float, ...]] = {"public_pass": (0.5, 1.0), "vote_share": (0.5, 0.75, 1.0)}


class _Frozen(BaseModel):
    model_config = {"frozen": True, "extra": "forbid"}


class Adaptive(_Frozen):
    max_n: int
    wave: int
    stop_confidence: float
    first_pass: bool = False


class Stage(_Frozen):
    model: str
    temperature: float
    n: int = 1
    selection: Selection = "first"
    n_tests: int = 0
    tests_model: str | None = None
    judge_model: str | None = None
    adaptive: Adaptive | None = None  # replaces generate + selection
    repair_rounds: int = 0
    repair_model: str | None = None

    @property
    def size(self) -> int:
        """Samples of (model, temperature) the stage may draw."""
        return self.adaptive.max_n if self.adaptive else self.n

    def layers(self, fixed: Config) -> list[Any]:
        max_tokens = fixed.max_tokens
        if self.adaptive:
            a = self.adaptive
            params = {"models": [self.model], "max_n": a.max_n, "wave": a.wave, "temperature": self.temperature,
                      "stop_confidence": a.stop_confidence, "first_pass": a.first_pass, "max_tokens": max_tokens}  # fmt: skip
            layers: list[Any] = [{"adaptive": params}]
        else:
            gen = {"models": [self.model], "n": self.n, "temperature": self.temperature, "max_tokens": max_tokens}
            layers = [{"generate": gen}]
            if self.selection == "vote":
                layers.append({"vote": {}})
            elif self.selection == "exec_vote":  # as sample-8-exec: the vote's prior is the public pass rate
                layers += [{"verify_exec": {"mode": "filter"}}, {"vote": {"prior": "verify_exec1"}}]
            elif self.selection == "codet":
                tests = {"models": [self.tests_model], "n_tests": self.n_tests, "temperature": fixed.tests_temperature,
                         "max_tokens": max_tokens}  # fmt: skip
                layers.append({"gen_tests": tests})
            elif self.selection == "rank":
                layers.append({"rank": {"model": self.judge_model, "mode": "pointwise", "max_tokens": fixed.judge_max_tokens}})
        if self.repair_rounds:
            repair = {"model": self.repair_model, "rounds": self.repair_rounds, "max_tokens": fixed.repair_max_tokens}
            layers.append({"repair": repair})
        return layers

    def label(self) -> str:
        if self.adaptive:
            a = self.adaptive
            core = f"adaptive≤{a.max_n}/w{a.wave}@{a.stop_confidence:g}{'+pass' if a.first_pass else ''} {self.model}"
        else:
            core = f"{self.n}×{self.model}@{self.temperature:g}"
            if self.selection == "codet":
                core += f" codet{self.n_tests}({self.tests_model})"
            elif self.selection == "rank":
                core += f" rank({self.judge_model})"
            elif self.selection != "first":
                core += f" {self.selection}"
        return core + (f" repair{self.repair_rounds}({self.repair_model})" if self.repair_rounds else "")


class Cascade(_Frozen):
    signal: Signal
    threshold: float
    stage: Stage  # the second stage, run when the first stage's signal is below the threshold


class Config(_Frozen):
    stage: Stage
    cascade: Cascade | None = None
    # the pool's fixed technique parameters (`PoolSpec`): the exported YAML must make the pool's requests
    max_tokens: int = 512
    tests_temperature: float = 0.6
    judge_max_tokens: int = 512
    repair_max_tokens: int = 768

    @property
    def stages(self) -> list[Stage]:
        return [self.stage] + ([self.cascade.stage] if self.cascade else [])

    @property
    def adaptive(self) -> bool:
        return any(s.adaptive for s in self.stages)

    def key(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def short_id(self) -> str:
        return hashlib.sha1(self.key().encode()).hexdigest()[:8]

    def label(self) -> str:
        if self.cascade:
            c = self.cascade
            return f"cascade[{self.stage.label()} → {c.signal}<{c.threshold:g} → {c.stage.label()}]"
        return self.stage.label()

    def to_spec(self, name: str | None = None) -> dict[str, Any]:
        """An architecture spec using only existing techniques (`build_architecture` / `load_architecture` accept it)."""
        name = name or f"search-{self.short_id()}"
        first = self.stage.layers(self)
        if not self.cascade:
            return {"name": name, "layers": first}
        second = self.cascade.stage.layers(self)
        stages = [{"name": f"{name}-stage0", "layers": first}, {"name": f"{name}-stage1", "layers": second}]
        cascade = {"signal": self.cascade.signal, "thresholds": [self.cascade.threshold], "stages": stages}
        return {"name": name, "layers": [{"cascade": cascade}]}

    def to_yaml(self, name: str | None = None) -> str:
        header = f"# {self.label()}\n# found by `thinktank search`; run it with `thinktank eval --arch <this file>`\n"
        return header + yaml.safe_dump(self.to_spec(name), sort_keys=False, default_flow_style=None, width=120)


class PoolLimits(_Frozen):
    """What the space may ask of a pool (n above the pool's size extends it: search cost)."""

    temperatures: tuple[float, ...]
    max_n: int = 16
    test_replies: int = 8
    repair_rounds: int = 3
    exec: bool = True  # public checks (code): exec_vote, repair, first_pass, public_pass
    codet: bool = True  # code with an entry point: generated tests
    fixed: dict[str, Any] = {}  # the pool's technique parameters every Config carries (max_tokens, ...)
    greedy_models: tuple[str, ...] = ()  # only ever a greedy generator (PoolSpec.greedy_models)

    @classmethod
    def of(cls, spec: PoolSpec, kind: str, max_n: int = 16) -> PoolLimits:
        code = kind_named(kind).search_runs_answers
        fixed = {"max_tokens": spec.max_tokens, "tests_temperature": spec.tests_temperature,
                 "judge_max_tokens": spec.judge_max_tokens, "repair_max_tokens": spec.repair_max_tokens}  # fmt: skip
        return cls(temperatures=spec.temperatures, max_n=max_n, test_replies=spec.test_replies,
                   repair_rounds=spec.repair_rounds, exec=code, codet=code, fixed=fixed,
                   greedy_models=spec.greedy_models)  # fmt: skip

    @property
    def hot(self) -> tuple[float, ...]:
        return tuple(t for t in self.temperatures if t > 0)

    @property
    def selections(self) -> tuple[str, ...]:
        return ("vote", "rank") + (("exec_vote",) if self.exec else ()) + (("codet",) if self.codet else ())


def _stage(trial: optuna.Trial, p: str, model: str, models: list[str], limits: PoolLimits, allow_adaptive: bool) -> Stage:
    models = [m for m in models if m not in limits.greedy_models]  # who may repair, write tests, judge
    adaptive_choices = [n for n in ADAPTIVE_MAX_N if n <= limits.max_n]
    kinds = ["fixed", "adaptive"] if allow_adaptive and limits.hot and adaptive_choices else ["fixed"]
    repair: dict[str, Any] = {}
    if limits.exec and models:
        rounds = trial.suggest_categorical(f"{p}repair_rounds", list(range(limits.repair_rounds + 1)))
        if rounds:
            repair = {"repair_rounds": rounds, "repair_model": trial.suggest_categorical(f"{p}repair_model", models)}
    if model in limits.greedy_models:
        return Stage(model=model, temperature=0.0, **repair)
    if trial.suggest_categorical(f"{p}generator", kinds) == "adaptive":
        adaptive = Adaptive(
            max_n=trial.suggest_categorical(f"{p}a_max_n", adaptive_choices),
            wave=trial.suggest_categorical(f"{p}a_wave", list(WAVES)),
            stop_confidence=trial.suggest_categorical(f"{p}a_stop", list(STOP_CONFIDENCE)),
            first_pass=trial.suggest_categorical(f"{p}a_first_pass", [False, True]) if limits.exec else False,
        )
        temperature = trial.suggest_categorical(f"{p}a_temperature", list(limits.hot))
        return Stage(model=model, temperature=temperature, adaptive=adaptive, **repair)
    temperature = trial.suggest_categorical(f"{p}temperature", list(limits.temperatures))
    if temperature == 0:  # greedy samples all agree: one is enough
        return Stage(model=model, temperature=0.0, **repair)
    n = trial.suggest_categorical(f"{p}n", [n for n in N_CHOICES if n <= limits.max_n])
    if n == 1:
        return Stage(model=model, temperature=temperature, **repair)
    selection = trial.suggest_categorical(f"{p}selection", list(limits.selections))
    extra: dict[str, Any] = {}
    if selection == "codet":
        extra = {"n_tests": trial.suggest_categorical(f"{p}n_tests", [k for k in TEST_CHOICES if k <= limits.test_replies]),
                 "tests_model": trial.suggest_categorical(f"{p}tests_model", models)}  # fmt: skip
    elif selection == "rank":
        extra = {"judge_model": trial.suggest_categorical(f"{p}judge_model", models)}
    return Stage(model=model, temperature=temperature, n=n, selection=selection, **extra, **repair)


def suggest(trial: optuna.Trial, models: list[str], limits: PoolLimits) -> Config:
    """One configuration, define-by-run (conditional parameters are only suggested when they matter)."""
    common = limits.fixed
    if len(models) < 2 or not trial.suggest_categorical("cascade", [False, True]):
        model = trial.suggest_categorical("model", list(models))
        return Config(stage=_stage(trial, "", model, models, limits, allow_adaptive=True), **common)
    pair = trial.suggest_categorical("cascade_pair", [f"{a}>{b}" for a in models for b in models if a != b])
    first, second = pair.split(">")
    signal = trial.suggest_categorical("signal", ["public_pass", "vote_share"] if limits.exec else ["vote_share"])
    threshold = trial.suggest_categorical(f"threshold_{signal}", list(THRESHOLDS[signal]))
    stage1 = _stage(trial, "", first, models, limits, allow_adaptive=True)
    stage2 = _stage(trial, "s2_", second, models, limits, allow_adaptive=False)
    return Config(stage=stage1, cascade=Cascade(signal=signal, threshold=threshold, stage=stage2), **common)


def baseline_params(models: list[str], limits: PoolLimits) -> list[dict[str, Any]]:
    """Trials to start from: greedy single per model, and the sample-8 presets' shapes where the pool allows."""
    out: list[dict[str, Any]] = []
    for model in models:
        base: dict[str, Any] = {"model": model} | ({"cascade": False} if len(models) > 1 else {})
        base |= {"repair_rounds": 0} if limits.exec and any(m not in limits.greedy_models for m in models) else {}
        if model in limits.greedy_models:
            out.append(base)
            continue
        base["generator"] = "fixed"
        if 0.0 in limits.temperatures:
            out.append(base | {"temperature": 0.0})
        if 0.8 in limits.hot and limits.max_n >= 8:
            out += [base | {"temperature": 0.8, "n": 8, "selection": s} for s in ("vote", "exec_vote") if s in limits.selections]
    return out
