import numpy as np
import pytest
from rag_fixtures import PASSAGES, TASK, passage_candidates, preset_with_given_passages, prompt_of, shown_order

from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.techniques.adaptive import AdaptiveSample
from thinktank.techniques.permute import Permute, debias, edges_first, order_at

IDS = [p.id for p in PASSAGES]


def first_shown(request):
    """A reader that believes the first passage it sees: p0 -> Quillmarsh, p1 -> Dunmere, others -> Osterby."""
    first = shown_order(prompt_of(request))[0]
    return {"p0": "Quillmarsh", "p1": "Dunmere"}.get(first, "Osterby")


def engine(reply=first_shown, **kwargs):
    backend = ScriptedBackend(lambda r, i: reply(r), **kwargs)
    return backend, Engine({"m": backend})


def calls(ctx):
    return [call for node in ctx.node.walk() for call in node.calls]


def test_orders_are_identity_then_cyclic_shifts_then_seeded_shuffles():
    assert order_at(0, 4) == [0, 1, 2, 3]
    assert [order_at(i, 4) for i in (1, 2, 3)] == [[1, 2, 3, 0], [2, 3, 0, 1], [3, 0, 1, 2]]
    later = [order_at(i, 4, seed=7) for i in range(4, 8)]
    assert later == [order_at(i, 4, seed=7) for i in range(4, 8)]  # deterministic
    assert all(sorted(o) == [0, 1, 2, 3] for o in later) and later != [order_at(i, 4, seed=8) for i in range(4, 8)]
    for pos in range(4):  # the Latin square: every passage visits every position once in the first k orders
        assert sorted(order_at(i, 4)[pos] for i in range(4)) == [0, 1, 2, 3]


async def test_one_call_per_order_in_parallel_prompts_in_the_intended_orders():
    backend, eng = engine(delay_s=0.05)
    ctx = eng.context(use_cache=False)
    out = await Permute(["m"], m=6).apply(ctx, TASK, passage_candidates())
    orders = [order_at(i, 5) for i in range(6)]
    seen = sorted((r.seed, shown_order(prompt_of(r))) for r in backend.requests)
    assert seen == [(i, [IDS[p] for p in orders[i]]) for i in range(6)]
    assert backend.peak_in_flight == 6  # all at once
    assert ctx.usage.calls == 6 == len(calls(ctx)) and len(out) == 6
    assert ctx.node.notes["orders"] == orders


async def test_answers_are_aggregated_by_vote():
    # orders 0..5 put p0, p1, p2, p3, p4, then a shuffle first: Quillmarsh once, Dunmere once, Osterby the rest
    _backend, eng = engine()
    ctx = eng.context()
    out = await Permute(["m"], m=5).apply(ctx, TASK, passage_candidates())
    assert out[0].answer == "Osterby" and out[0].scores["permute"] == pytest.approx(3 / 5)
    assert [g["size"] for g in ctx.node.notes["groups"]] == [3, 1, 1]
    assert {c.answer for c in out[3:]} == {"Quillmarsh", "Dunmere"}


async def test_ties_go_to_the_retrievers_order():
    _backend, eng = engine()
    out = await Permute(["m"], m=2).apply(eng.context(), TASK, passage_candidates())
    assert out[0].answer == "Quillmarsh"  # 1 vote each: order 0 (the identity) wins


def test_debias_recovers_a_planted_utility_under_a_planted_position_bias():
    rng = np.random.default_rng(0)
    k = 5
    utility = np.array([0.9, 0.1, 0.4, 0.0, 0.2])
    bias = np.array([0.3, 0.0, -0.25, -0.15, 0.1])  # first and last positions favoured, the middle not
    # an unbalanced design (the identity six times) so that averaging per passage would be confounded
    orders = [order_at(0, k)] * 6 + [order_at(i, k) for i in range(1, 5)]
    credit = np.array([[utility[p] + bias[pos] for p in range(k) for pos in [order.index(p)]] for order in orders])
    credit += rng.normal(0, 0.02, credit.shape)
    got_u, got_b = debias(credit, orders)
    assert got_u == pytest.approx(utility, abs=0.05) and got_b == pytest.approx(bias, abs=0.05)
    naive = credit.mean(axis=0)
    assert np.abs(naive - utility).max() > 0.1  # what the regression corrects


def test_edges_first_puts_the_most_useful_at_both_ends():
    assert edges_first([0.1, 0.9, 0.5, 0.0, 0.7]) == [1, 2, 3, 0, 4]


async def test_utilities_in_scores_and_notes_and_the_final_call_orders_by_them():
    backend, eng = engine()
    ctx = eng.context()
    out = await Permute(["m"], m=5, final_call=True).apply(ctx, TASK, passage_candidates())
    utility = ctx.node.notes["utility"]
    assert set(utility) == set(IDS) and len(ctx.node.notes["position_bias"]) == 5
    assert all(c.scores[f"permute.utility[{pid}]"] == pytest.approx(u, abs=1e-4) for c in out for pid, u in utility.items())
    final_request = next(r for r in backend.requests if r.seed == 5)
    expected = [IDS[p] for p in edges_first([out[1].scores[f"permute.utility[{i}]"] for i in IDS])]
    assert shown_order(prompt_of(final_request)) == expected == ctx.node.notes["final_order"]
    assert out[0].answer == first_shown(final_request) and len(out) == 6 and len(backend.requests) == 6
    # Osterby is the winner; p2 ("moved to Osterby") is the one passage that supports it
    assert max(utility, key=utility.get) == "p2"


async def test_without_passages_one_closed_book_call():
    backend, eng = engine(lambda r: "no idea")
    out = await Permute(["m"], m=4).apply(eng.context(), TASK, [])
    assert len(backend.requests) == 1 and prompt_of(backend.requests[0]) == TASK.prompt and len(out) == 1


async def test_adaptive_samples_orders_in_waves_and_stops_when_settled():
    backend, eng = engine(lambda r: "Quillmarsh")
    arch = preset_with_given_passages("rag-moi-adaptive", ["m"])
    ctx = eng.context()
    result = await arch.run(TASK, ctx)
    adaptive = next(n for n in ctx.node.walk() if n.name == "adaptive1")
    assert result.answer.answer == "Quillmarsh" and adaptive.notes["stop_reason"].startswith("leader settled")
    assert sorted(r.seed for r in backend.requests) == [0, 1, 2, 3]  # 2 waves of 2 orders, then 4 agree
    assert sorted(tuple(shown_order(prompt_of(r))) for r in backend.requests) == sorted(
        tuple(IDS[p] for p in order_at(i, 5)) for i in range(4)
    )


def test_adaptive_refuses_a_generator_without_draw():
    from thinktank.arch import build_architecture

    stage = build_architecture({"layers": [{"generate": {}}]}, ["m"])
    with pytest.raises(ValueError, match="draw"):
        AdaptiveSample(["m"], generator=[stage])


async def test_rag_moi_preset_runs_six_orders_and_votes():
    backend, eng = engine()
    result = await preset_with_given_passages("rag-moi", ["m"]).run(TASK, eng.context())
    assert len(backend.requests) == 6 and result.answer.answer == "Osterby"
