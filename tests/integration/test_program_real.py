"""`program` end to end on the real Qwen2.5-Coder-0.5B llama-server: gsm-symbolic problems through `eval`'s runner
with the program preset, programs executed in the real sandbox, every token accounted against the server's counters.

The model is small, so this checks mechanics (the model writes programs, the sandbox runs them, executed values are
voted and graded, usage is complete), not accuracy.
"""

from __future__ import annotations

import asyncio

import pytest

from thinktank.arch import build_architecture, load_architecture
from thinktank.backends.llama_server import LlamaServer
from thinktank.engine import Engine
from thinktank.eval.runner import run_eval, summarize
from thinktank.eval.store import RunStore
from thinktank.tasks.gsm_symbolic import GsmSymbolicTask

from .conftest import server_metrics

pytestmark = pytest.mark.integration

MODEL = "qwen2.5-coder-0.5b-instruct"
N = 2  # samples per problem: enough for a vote between executed values, little enough for a shared 2-core machine
STATUSES = {"ok", "raised", "timeout", "printed", "non_number", "no_program", "memory", "killed", "output_limit"}


@pytest.fixture(scope="module")
def server():
    server = LlamaServer(MODEL, slots=4, ctx_per_slot=2048)
    asyncio.run(server.start())
    yield server
    server.terminate()


def pal_preset(n: int, max_tokens: int):
    """The shipped pal-8-vote preset with fewer, shorter samples (the test stays around two minutes)."""
    spec = load_architecture("pal-8-vote", [MODEL]).spec
    assert [next(iter(layer)) for layer in spec["layers"]] == ["program", "vote"]
    spec["layers"][0]["program"] |= {"n": n, "max_tokens": max_tokens}
    return build_architecture(spec, [MODEL])


async def test_program_preset_on_gsm_symbolic_runs_programs_in_the_sandbox_and_accounts_every_token(server, tmp_path):
    problems = GsmSymbolicTask(n=3, seed=0).load(limit=3)
    architecture = pal_preset(n=N, max_tokens=384)  # the model explains before its code: 160 cut most programs off
    store = RunStore(tmp_path / "run")
    async with server.backend() as backend:
        engine = Engine({MODEL: backend})
        before = server_metrics(server)["llamacpp:tokens_predicted_total"]
        try:
            progress = await run_eval(engine, architecture, problems, store, concurrency=3)
        finally:
            await engine.aclose()
        after = server_metrics(server)["llamacpp:tokens_predicted_total"]
    records = store.records()
    summary = summarize(store)
    store.close()
    assert progress.done == len(records) == 3 and summary["problems"] == 3
    # llama-server draws a query's seeded samples in one call (n = 2), so calls are 1 per problem
    assert [(r.error, r.n_candidates, r.calls) for r in records] == [(None, N, 1)] * 3
    assert sum(r.completion_tokens for r in records) == after - before  # every call accounted, nothing else spent
    candidates = [c for r in records for c in r.candidates]
    assert all("program" in c and c["verdicts"]["program0"]["details"]["status"] in STATUSES for c in candidates)
    ran = [c for c in candidates if c["verdicts"]["program0"]["details"]["status"] not in ("no_program",)]
    assert ran, "the model wrote no program at all"
    answered = [c for c in candidates if c["answer"] is not None]
    assert answered, [c["verdicts"]["program0"]["reason"] for c in candidates]  # the sandbox ran programs to values
    for c in answered:
        assert c["answer"] == c["verdicts"]["program0"]["details"]["value"] and c["verdicts"]["program0"]["passed"]
        assert "hidden_verdict" in c and c["scores"]["vote1"] > 0
    for r in records:  # the answer is the vote's winner, graded on its executed value
        assert r.answer == (r.candidates[0]["answer"])
