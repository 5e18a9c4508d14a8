"""Replay: each selection rule on known samples, and replay == a real run of the exported YAML (draw 0)."""

import pytest

from thinktank.arch import build_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.eval.runner import run_eval
from thinktank.eval.store import RunStore
from thinktank.search.pool import PoolSpec, SamplePool
from thinktank.search.replay import bootstrap_ci, evaluate
from thinktank.search.space import Adaptive, Cascade, Config, Stage
from thinktank.types import BackendResponse

from .fakes import MODELS, engine, fence, problems, program, reply

SPEC = PoolSpec(models=tuple(MODELS), n=4, test_replies=4, repair_rounds=2)


class Batched(ScriptedBackend):
    """Like llama-server's seeded native n: one call carries up to 3 samples, choice j drawn with seed s + j."""

    def __init__(self):
        super().__init__(reply, supports_native_n=True, seeded_native_n=True, max_n_per_call=3)

    async def generate(self, request):
        parts = [await super(Batched, self).generate(request.with_(n=1, seed=request.seed + j)) for j in range(request.n)]
        return BackendResponse([p.choices[0] for p in parts], parts[0].prompt_tokens, latency_s=sum(p.latency_s for p in parts))


def batched_engine():
    return Engine({m: Batched() for m in MODELS})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One pool on 8 problems, shared by the tests of this module (replay never changes what is already there)."""
    import asyncio

    eng, _ = engine()
    pool = SamplePool(tmp_path_factory.mktemp("pool") / "pool.sqlite", problems(8), SPEC, engine=eng)
    asyncio.run(pool.build())
    return pool


@pytest.fixture(scope="module")
def built_batched(tmp_path_factory):
    import asyncio

    pool = SamplePool(tmp_path_factory.mktemp("pool") / "pool.sqlite", problems(8), SPEC, engine=batched_engine())
    asyncio.run(pool.build())
    return pool


FIDELITY = {
    "greedy": Config(stage=Stage(model="small", temperature=0.0)),
    "vote": Config(stage=Stage(model="small", temperature=0.8, n=4, selection="vote")),
    "exec_vote": Config(stage=Stage(model="small", temperature=0.8, n=4, selection="exec_vote")),
    "codet": Config(stage=Stage(model="small", temperature=0.8, n=4, selection="codet", n_tests=2, tests_model="big")),
    "rank": Config(stage=Stage(model="big", temperature=0.8, n=4, selection="rank", judge_model="small")),
    "repair": Config(stage=Stage(model="small", temperature=0.0, repair_rounds=2, repair_model="small")),
    "vote+repair": Config(stage=Stage(model="small", temperature=0.8, n=2, selection="vote", repair_rounds=1, repair_model="big")),
    "rank+repair": Config(
        stage=Stage(model="small", temperature=0.8, n=4, selection="rank", judge_model="big", repair_rounds=2, repair_model="small")
    ),
    "adaptive": Config(stage=Stage(model="small", temperature=0.8, adaptive=Adaptive(max_n=4, wave=2, stop_confidence=0.75))),
    "adaptive+pass": Config(
        stage=Stage(model="small", temperature=0.8, adaptive=Adaptive(max_n=4, wave=1, stop_confidence=0.99, first_pass=True))
    ),
    "cascade-pass": Config(
        stage=Stage(model="small", temperature=0.8, n=2, selection="exec_vote"),
        cascade=Cascade(signal="public_pass", threshold=1.0, stage=Stage(model="big", temperature=0.0)),
    ),
    "cascade-margin": Config(
        stage=Stage(model="small", temperature=0.8, n=4, selection="vote"),
        cascade=Cascade(
            signal="vote_share",
            threshold=0.75,
            stage=Stage(model="big", temperature=0.8, n=2, selection="codet", n_tests=4, tests_model="small", repair_rounds=1,
                        repair_model="big"),
        ),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(FIDELITY))
async def test_replay_of_draw_0_equals_a_real_run_of_the_exported_yaml(built, tmp_path, name):
    await same_as_real(built, FIDELITY[name], engine()[0], tmp_path)


@pytest.mark.parametrize("name", ["vote", "codet", "adaptive", "cascade-margin", "rank+repair"])
async def test_fidelity_when_calls_carry_several_samples(built_batched, tmp_path, name):
    """Seeded native n (llama-server): a request for n samples pays its prompt once per call of up to 3."""
    await same_as_real(built_batched, FIDELITY[name], batched_engine(), tmp_path)


async def same_as_real(built, config, real_engine, tmp_path):
    """`real_engine` has no response cache: every call is made and counted."""
    ids = sorted(built.problems)
    replayed = await evaluate(built, config, ids, draws=0)
    arch = build_architecture(config.to_spec(), MODELS)
    store = RunStore(tmp_path / "real")
    await run_eval(real_engine, arch, [built.problems[i] for i in ids], store)
    real = {r.problem_id: r for r in store.records()}
    assert {pid: real[pid].passed for pid in ids} == replayed.canonical
    assert {pid: real[pid].tokens for pid in ids} == replayed.canonical_tokens
    assert replayed.calls == sum(r.calls for r in real.values()) / len(ids)


async def test_every_configuration_is_scored_on_both_outcomes(built):
    """The fake task is built so that the rules disagree: otherwise the fidelity test would prove little."""
    ids = sorted(built.problems)
    accuracies = {name: (await evaluate(built, config, ids, draws=0)).canonical_accuracy for name, config in FIDELITY.items()}
    assert len(set(accuracies.values())) >= 5
    assert sum(0 < a < 1 for a in accuracies.values()) >= 7


# --- each selection rule on one problem with hand-picked samples -------------------------------------------


def picked(variants, tests=("assert f1(10) == 11",), judge=None):
    """Problem 1; sample s of the hot pool is `variants[s]`; one test reply; judge scores by variant."""
    judge = judge or {"RIGHT": 8, "LUCKY": 9, "OFF": 2, "TIMES": 4}

    def handler(request, _):
        prompt = request.messages[-1]["content"]
        if "unit tests" in prompt:
            return "```python\n" + "\n".join(tests) + "\n```"
        if prompt.startswith("Rate how well"):
            shown = prompt.split("Response:", 1)[1]
            lines = {v: program(1, v).strip().splitlines()[1].strip() for v in judge}
            kind = max((v for v in judge if lines[v] in shown), key=lambda v: len(lines[v]))  # LUCKY's line contains RIGHT's
            return f"Score: {judge[kind]}"
        if "Your previous answer" in prompt:
            return fence(program(1, "RIGHT"))
        return fence(program(1, variants[request.seed] if request.temperature else "OFF"))

    return Engine({"m": ScriptedBackend(handler)})


async def rule(tmp_path, variants, stage, **kw):
    (problem,) = problems(1, start=1)
    pool = SamplePool(
        tmp_path / "p.sqlite", [problem], PoolSpec(models=("m",), n=len(variants), test_replies=1), engine=picked(variants, **kw)
    )
    await pool.build()
    result = await evaluate(pool, Config(stage=stage), [problem.id], draws=0)
    return result.canonical[problem.id], result


async def test_vote_takes_the_largest_behaviour_group_ties_to_the_earliest(tmp_path):
    stage = Stage(model="m", temperature=0.8, n=4, selection="vote")
    # OFF x2 vs {RIGHT, LUCKY} (same outputs on the public inputs): a tie, the earliest group (OFF) wins
    assert (await rule(tmp_path / "a", ["OFF", "RIGHT", "LUCKY", "OFF"], stage))[0] is False
    assert (await rule(tmp_path / "b", ["RIGHT", "OFF", "LUCKY", "OFF"], stage))[0] is True


async def test_exec_vote_keeps_public_passes_then_votes(tmp_path):
    stage = Stage(model="m", temperature=0.8, n=4, selection="exec_vote")
    assert (await rule(tmp_path / "a", ["OFF", "OFF", "OFF", "RIGHT"], stage))[0] is True
    # LUCKY passes the public tests too and comes first: the hidden tests catch it
    assert (await rule(tmp_path / "b", ["OFF", "LUCKY", "OFF", "RIGHT"], stage))[0] is False


async def test_codet_prefers_what_generated_tests_confirm(tmp_path):
    stage = Stage(model="m", temperature=0.8, n=4, selection="codet", n_tests=1, tests_model="m")
    # f1(10) == 11 fails LUCKY (returns 0) and OFF; RIGHT alone passes it
    assert (await rule(tmp_path / "a", ["LUCKY", "LUCKY", "OFF", "RIGHT"], stage))[0] is True
    # with no usable generated test the order is unchanged: the first sample answers
    assert (await rule(tmp_path / "b", ["LUCKY", "RIGHT"], stage.model_copy(update={"n": 2}), tests=("no asserts",)))[0] is False


async def test_codet_pays_for_no_tests_when_all_samples_are_one_program(tmp_path):
    codet = Stage(model="m", temperature=0.8, n=2, selection="codet", n_tests=1, tests_model="m")
    vote = Stage(model="m", temperature=0.8, n=2, selection="vote")
    passed, with_codet = await rule(tmp_path / "a", ["RIGHT", "RIGHT"], codet)
    _, with_vote = await rule(tmp_path / "b", ["RIGHT", "RIGHT"], vote)
    assert passed and (with_codet.tokens, with_codet.calls) == (with_vote.tokens, with_vote.calls)
    _, two_programs = await rule(tmp_path / "c", ["RIGHT", "LUCKY"], codet)
    assert two_programs.calls == with_vote.calls + 1  # the one test-writing reply


async def test_rank_takes_the_top_judge_score(tmp_path):
    stage = Stage(model="m", temperature=0.8, n=3, selection="rank", judge_model="m")
    assert (await rule(tmp_path / "a", ["OFF", "RIGHT", "TIMES"], stage))[0] is True
    assert (await rule(tmp_path / "b", ["OFF", "RIGHT", "LUCKY"], stage))[0] is False  # the judge prefers LUCKY
    _, result = await rule(tmp_path / "c", ["OFF", "OFF", "OFF"], stage)
    assert result.calls == 3 + 1  # three samples, one judge call for the one distinct answer


async def test_repair_fixes_the_first_failing_candidate_and_costs_its_rounds(tmp_path):
    stage = Stage(model="m", temperature=0.0, repair_rounds=2, repair_model="m")  # greedy is OFF here
    passed, result = await rule(tmp_path / "a", ["RIGHT"], stage)
    assert passed and result.calls == 2  # the sample, one repair round (it passes, the chain stops)


async def test_adaptive_stops_at_the_first_public_pass(tmp_path):
    stage = Stage(model="m", temperature=0.8, adaptive=Adaptive(max_n=4, wave=1, stop_confidence=0.99, first_pass=True))
    passed, result = await rule(tmp_path / "a", ["OFF", "LUCKY", "RIGHT", "RIGHT"], stage)
    assert not passed and result.calls == 2  # stopped after LUCKY passed the public tests


async def test_random_draws_estimate_expected_accuracy_reproducibly(built):
    ids = sorted(built.problems)
    config = Config(stage=Stage(model="small", temperature=0.8, n=2, selection="vote"))
    first = await evaluate(built, config, ids, draws=6, seed=3)
    again = await evaluate(built, config, ids, draws=6, seed=3)
    assert first.per_problem == again.per_problem and first.draws == 7
    assert any(0 < v < 1 for v in first.per_problem.values())  # subsets disagree on some problems
    low, high = first.ci95
    assert low <= first.accuracy <= high
    full = await evaluate(built, config.model_copy(update={"stage": config.stage.model_copy(update={"n": 4})}), ids, draws=6)
    assert full.draws == 1  # n == pool size: the single full draw


def test_bootstrap_interval_brackets_the_mean():
    low, high = bootstrap_ci([0, 1] * 20, seed=1)
    assert low < 0.5 < high and high - low < 0.4
    assert bootstrap_ci([1.0] * 5) == (1.0, 1.0)
