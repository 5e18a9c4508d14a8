"""Distributed eval on a REAL two-node Ray cluster on loopback (`ray_cluster`): the rows equal a local run's, a run
resumes with exactly the missing problems, a killed worker process or a lost node costs no problem and doubles
none, a node with another thinktank is refused, and the real llama-server runs in each worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from integration.conftest import SMALL_MODEL
from integration.test_llama_server import llama_server_pids
from telemetry.receiver import otlp_receiver

from thinktank.arch import build_architecture, load_architecture
from thinktank.cluster import OpenEngine, WorkerJob, connected, run_eval_on_ray
from thinktank.eval.runner import run_eval
from thinktank.eval.store import ProblemRecord, RunStore
from thinktank.exceptions import ClusterError
from thinktank.runtime import open_engine
from thinktank.tasks.registry import load_problems
from thinktank.telemetry import resolve_endpoint
from thinktank.testing import FakeOpenAIServer

from .local_cluster import LocalCluster, cluster_env
from .scripted import ScriptedEngine, code_problems, math_problems

pytestmark = pytest.mark.integration

TIMING = {"latency_s", "started_s", "ended_s", "duration_s"}


def comparable(value):
    """A row without its timings (latencies differ from run to run; everything else must not)."""
    if isinstance(value, ProblemRecord):
        value = {k: v for k, v in vars(value).items() if k not in TIMING}
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def rows(store: RunStore) -> list:
    return [comparable(r) for r in store.records()]


async def local_rows(tmp_path: Path, arch, problems) -> list:
    store = RunStore(tmp_path / "local")
    async with ScriptedEngine().open() as engine:
        await run_eval(engine, arch, problems, store, concurrency=4)
    return rows(store)


async def test_rows_across_two_nodes_equal_a_local_run_and_a_rerun_resumes(ray_cluster, tmp_path, monkeypatch):
    arch = load_architecture("sample-8-vote", ["m"])  # 8 seeded samples per problem: seeds s+i, whoever draws them
    problems = math_problems(30) + code_problems(6)  # code is graded by one-CPU Ray tasks in the sandbox
    expected = await local_rows(tmp_path, arch, problems)
    assert {r["passed"] for r in expected} == {True, False}
    job = WorkerJob(ScriptedEngine(), arch.spec, ["m"])
    store = RunStore(tmp_path / "ray")
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    with connected("auto") as nodes:  # `auto` finds the cluster through $RAY_ADDRESS
        assert len(nodes) == 2
        seen = []
        first = await run_eval_on_ray(job, problems[:20], store, workers=2, concurrency=3, on_workers=seen.extend)
        assert first.done == 20 and len({w.node_id for w in seen}) == 2  # one worker on each node
        rest = await run_eval_on_ray(job, problems, store, workers=2, concurrency=3)
        assert rest.done == len(problems) - 20  # exactly the missing ones
        assert (await run_eval_on_ray(job, problems, store, workers=1)).done == 0
    assert rows(store) == expected
    code = [r for r in store.records() if r.problem_id.startswith("c")]
    assert len(code) == 6 and any(0 < r.n_correct < r.n_candidates for r in code)  # the sandbox failed some candidates


async def test_each_worker_exports_its_problems_traces_to_the_otlp_endpoint(ray_cluster, tmp_path):
    """`eval --ray --otlp URL`: spans leave from the workers on both nodes (service `thinktank-worker`), one query span
    per problem, its calls under it, with the tokens the run store counted; the worker's `stop` flushes them."""
    arch = load_architecture("sample-8-vote", ["m"])
    problems = math_problems(8)
    ids = {p.id for p in problems}
    store = RunStore(tmp_path / "ray")
    with otlp_receiver() as receiver, connected(ray_cluster.address):
        job = WorkerJob(ScriptedEngine(), arch.spec, ["m"], otlp_endpoint=resolve_endpoint(receiver.url))
        assert (await run_eval_on_ray(job, problems, store, workers=2, concurrency=3)).done == 8
        spans = receiver.wait_for(lambda got: ids <= {s.attributes.get("thinktank.problem.id") for s in got})
    queries = [s for s in spans if "thinktank.problem.id" in s.attributes]
    assert sorted(s.attributes["thinktank.problem.id"] for s in queries) == sorted(ids)  # each problem once
    assert {s.service for s in spans} == {"thinktank-worker"}
    calls = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert {s.trace_id for s in calls} == {s.trace_id for s in queries}  # every call inside its problem's trace
    assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in calls) == sum(r.completion_tokens for r in store.records())
    passed = {s.attributes["thinktank.problem.id"]: s.attributes["thinktank.passed"] for s in queries}
    assert passed == {r.problem_id: r.passed for r in store.records()}


async def test_a_killed_worker_process_costs_nothing_and_doubles_nothing(ray_cluster, tmp_path):
    arch = load_architecture("single", ["m"])
    problems = math_problems(60)
    expected = await local_rows(tmp_path, arch, problems)
    job = WorkerJob(ScriptedEngine(delay_s=0.1), arch.spec, ["m"])
    store = RunStore(tmp_path / "ray")
    workers, killed = [], []

    def kill_one(record, progress):
        if progress.done == 5:  # mid-run: 55 problems to go, some in flight on the victim
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.append(progress.done)

    with connected(ray_cluster.address):
        progress = await run_eval_on_ray(job, problems, store, workers=2, concurrency=2, on_workers=workers.extend,
                                         on_problem=kill_one)  # fmt: skip
    assert killed == [5]
    with pytest.raises(ProcessLookupError):
        os.kill(workers[0].pid, 0)
    ids = [r.problem_id for r in store.records()]
    assert progress.done == 60 and len(ids) == 60 and sorted(ids) == sorted(p.id for p in problems)
    assert rows(store) == expected


def test_a_node_running_another_thinktank_is_refused(tmp_path):
    """A head whose thinktank is 9.9.9 (its own dist-info first on the path): the driver refuses before any work."""
    fake = tmp_path / "other"
    (fake / "thinktank-9.9.9.dist-info").mkdir(parents=True)
    (fake / "thinktank-9.9.9.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: thinktank\nVersion: 9.9.9\n")
    cluster = LocalCluster(cluster_env(str(fake)))
    try:
        cluster.start_head()
        started = time.monotonic()
        with (
            pytest.raises(ClusterError, match=r"thinktank 9\.9\.9 \(driver: 0|install the same version"),
            connected(cluster.address),
        ):
            pass
        assert time.monotonic() - started < 60
    finally:
        cluster.stop()


async def test_the_real_llama_server_runs_in_each_worker(ray_cluster, tmp_path):
    """smollm2 through `OpenEngine`: each worker starts its node's llama-server, stops it at the end; rows match local."""
    spec = {"name": "short", "layers": [{"generate": {"n": 1, "temperature": 0.0, "max_tokens": 24}}]}
    arch = build_architecture(spec, [SMALL_MODEL])
    problems = load_problems("gsm-symbolic", seed=0, limit=2)
    local = RunStore(tmp_path / "local")
    async with open_engine([SMALL_MODEL], slots=1, use_cache=False) as engine:
        await run_eval(engine, arch, problems, local, concurrency=1)
    workers: list = []
    during: dict[int, int] = {}  # llama-server pid -> the worker that started it (other jobs' servers are not ours)

    def servers(record, progress):
        pids = {w.pid for w in workers}
        during.update({pid: parent for pid in llama_server_pids() if (parent := parent_pid(pid)) in pids})

    job = WorkerJob(OpenEngine([SMALL_MODEL], slots=1, use_cache=False), spec, [SMALL_MODEL])
    store = RunStore(tmp_path / "ray")
    with connected(ray_cluster.address):
        await run_eval_on_ray(job, problems, store, workers=2, concurrency=1, on_workers=workers.extend, on_problem=servers)
    assert sorted(during.values()) == sorted(w.pid for w in workers)  # one server per worker, started by it
    deadline = time.monotonic() + 20
    while llama_server_pids() & set(during) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not llama_server_pids() & set(during)  # stopped with the run
    assert [(r.problem_id, r.answer, r.passed) for r in store.records()] == [
        (r.problem_id, r.answer, r.passed) for r in local.records()
    ]


def test_the_eval_command_over_the_cluster_matches_a_local_run_and_forwards_the_api_key(ray_cluster, tmp_path):
    """`thinktank eval --ray ADDRESS --backend URL`: the workers call the endpoint with the driver's key (the nodes'
    environment has none), the table and rows are the local command's."""
    with FakeOpenAIServer(text_for=lambda body, i: f"The answer is #### {len(body['messages'][-1]['content']) % 50}") as server:
        env = dict(os.environ, COLUMNS="300", TT_KEY="sekrit", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        base = [sys.executable, "-m", "thinktank.cli", "eval", "--task", "gsm-symbolic", "--limit", "6", "--arch",
                "sample-8-vote", "--backend", server.base_url, "--api-key-env", "TT_KEY", "--no-cache"]  # fmt: skip
        local = subprocess.run([*base, "--run-dir", str(tmp_path / "local")], capture_output=True, text=True, env=env)
        assert local.returncode == 0, local.stderr[-2000:]
        calls_local = len(server.chat_requests)
        ray = subprocess.run([*base, "--run-dir", str(tmp_path / "ray"), "--ray", ray_cluster.address, "--ray-workers", "2"],
                             capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
        assert ray.returncode == 0, ray.stderr[-3000:]
        remote = server.chat_requests[calls_local:]
    assert len(remote) == calls_local > 0
    assert {r.headers.get("authorization") for r in remote} == {"Bearer sekrit"}
    assert "results:" in ray.stdout and "6 " in ray.stdout
    assert rows(RunStore(tmp_path / "ray")) == rows(RunStore(tmp_path / "local"))


def test_eval_over_the_cluster_with_a_backends_file_uses_the_pool_from_every_worker(ray_cluster, tmp_path):
    """`--ray` + `--backends FILE`: each worker opens the file's pool (two loopback servers), its key read on the
    driver; the rows equal the same command's without Ray."""
    text = lambda body, i: f"#### {len(body['messages'][-1]['content']) % 7}"  # noqa: E731
    with FakeOpenAIServer(text_for=text) as one, FakeOpenAIServer(text_for=text) as two:
        backends = tmp_path / "backends.yaml"
        backends.write_text(
            "models:\n  my-model:\n    model: served-model\n    api_key_env: POOL_RAY_KEY\n    endpoints:\n"
            f"      - {{url: {one.base_url}, slots: 2}}\n      - {{url: {two.base_url}, slots: 2}}\n"
        )
        env = dict(os.environ, COLUMNS="300", POOL_RAY_KEY="pool-secret", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        base = [sys.executable, "-m", "thinktank.cli", "eval", "--task", "gsm-symbolic", "--limit", "8", "-m", "my-model",
                "--backends", str(backends), "--no-cache"]  # fmt: skip
        local = subprocess.run([*base, "--run-dir", str(tmp_path / "local")], capture_output=True, text=True, env=env)
        assert local.returncode == 0, local.stderr[-2000:]
        before = len(one.chat_requests) + len(two.chat_requests)
        ray = subprocess.run([*base, "--run-dir", str(tmp_path / "ray"), "--ray", ray_cluster.address, "--ray-workers", "2"],
                             capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
        assert ray.returncode == 0, ray.stderr[-3000:]
        calls = one.chat_requests + two.chat_requests
    assert len(calls) - before == before == 8
    assert {r.headers["authorization"] for r in calls} == {"Bearer pool-secret"}
    assert {r.body["model"] for r in calls} == {"served-model"}
    assert rows(RunStore(tmp_path / "ray")) == rows(RunStore(tmp_path / "local"))


async def test_a_node_lost_mid_run_costs_nothing_and_doubles_nothing(ray_cluster, tmp_path):
    """Last in this module: it kills the second node's raylet (the node dies); its worker restarts on the head."""
    arch = load_architecture("single", ["m"])
    problems = math_problems(40)
    expected = await local_rows(tmp_path, arch, problems)
    job = WorkerJob(ScriptedEngine(delay_s=0.1), arch.spec, ["m"])
    store = RunStore(tmp_path / "ray")
    victim = ray_cluster.nodes[1]
    raylet = victim.raylet_pid()
    killed = []

    def lose_node(record, progress):
        if progress.done == 4:
            os.kill(raylet, signal.SIGKILL)
            killed.append(progress.done)

    with connected(ray_cluster.address) as nodes:
        assert len(nodes) == 2
        progress = await run_eval_on_ray(job, problems, store, workers=2, concurrency=2, on_problem=lose_node)
    assert killed == [4]
    ids = [r.problem_id for r in store.records()]
    assert progress.done == 40 and sorted(ids) == sorted(p.id for p in problems)
    assert rows(store) == expected
