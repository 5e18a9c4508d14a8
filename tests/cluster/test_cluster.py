"""Unit tests of the Ray driver and worker without a cluster: addresses, version checks, the worker's solve/stop, the
grading split, and the driver's queue (commit once, hand a lost worker's problems to the others) over fake handles.
The real cluster is in test_ray_real.py."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest

from thinktank.arch import load_architecture
from thinktank.cluster import NodeFacts, WorkerJob
from thinktank.cluster.connect import Address, check_versions, connected, source_digest
from thinktank.cluster.eval import _drain, with_grading_placement
from thinktank.cluster.worker import EvalWorker, TaskGrader
from thinktank.engine.resources import Resources
from thinktank.eval.grading import Grader
from thinktank.eval.runner import Progress, solve_and_grade
from thinktank.eval.store import RunStore
from thinktank.exceptions import BackendDied, ClusterError, ConfigError, StoreError
from thinktank.verifiers.base import Verdict

from .scripted import ScriptedEngine, code_problems, math_problems


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once it is closed


# --- addresses and versions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("auto", None, None), ("local", None, None), ("10.0.0.5:6379", "10.0.0.5", 6379), ("ray://head:10001", "head", 10001),
     ("[::1]:6379", "::1", 6379)],
)  # fmt: skip
def test_addresses_parse(text, host, port):
    address = Address.parse(text)
    assert (address.raw, address.host, address.port) == (text, host, port)


@pytest.mark.parametrize("text", ["", "head", "head:", ":6379", "head:port", "head:70000", "head:0"])
def test_a_malformed_address_is_a_config_error(text):
    with pytest.raises(ConfigError, match="expected auto, local, or HOST:PORT"):
        Address.parse(text)


def test_an_unreachable_head_fails_fast_naming_it_and_ray_is_not_started():
    import ray

    port = closed_port()
    started = time.monotonic()
    reason = rf"cannot reach the Ray head at 127\.0\.0\.1:{port} .*ray start --head --port={port}"
    with pytest.raises(ClusterError, match=reason), connected(f"127.0.0.1:{port}"):
        pass
    assert time.monotonic() - started < 5 and not ray.is_initialized()


def test_eval_with_an_unreachable_or_malformed_ray_address_exits_2_with_the_reason(tmp_path):
    port = closed_port()
    base = [sys.executable, "-m", "thinktank.cli", "eval", "--task", "gsm-symbolic", "--limit", "1", "--run-dir"]
    env = dict(os.environ, COLUMNS="300")
    bad = subprocess.run([*base, str(tmp_path / "a"), "--ray", f"127.0.0.1:{port}"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and f"cannot reach the Ray head at 127.0.0.1:{port}" in bad.stderr
    bad = subprocess.run([*base, str(tmp_path / "b"), "--ray", "head"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "expected auto, local, or HOST:PORT" in bad.stderr
    bad = subprocess.run([*base, str(tmp_path / "c"), "--ray", "auto", "--otlp", "ftp://127.0.0.1:4318"],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert bad.returncode == 2 and "'ftp://127.0.0.1:4318' is not an http(s) URL" in bad.stderr  # before joining Ray


def test_a_head_that_answers_but_will_not_take_us_is_a_cluster_error_with_ray_s_reason(monkeypatch):
    """What a driver of another Ray version (or without the cluster's token) gets from `ray.init`: a bare
    ConnectionError whose reason is in its cause (seen with a Ray 2.40 driver against a 2.60 head)."""
    import ray

    def refuse(**kwargs):
        try:
            raise RuntimeError("Could not read 'temp_dir' from GCS. Did GCS start successfully?")
        except RuntimeError as exc:
            raise ConnectionError from exc

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        monkeypatch.setattr(ray, "init", refuse)
        with pytest.raises(
            ClusterError, match=r"cannot join the Ray cluster at .*: Could not read 'temp_dir' .*Ray version.*RAY_AUTH_TOKEN"
        ):
            connected(f"127.0.0.1:{listener.getsockname()[1]}").__enter__()

    def other_version(**kwargs):
        raise RuntimeError("Version mismatch: The cluster was started with: Ray: 2.59.0 Python: 3.11.7")

    monkeypatch.setattr(ray, "init", other_version)
    with pytest.raises(ClusterError, match=r"runs another Ray or Python: Version mismatch"):
        connected("local").__enter__()


def test_a_node_with_another_version_is_refused_naming_the_node_and_both_versions():
    driver = NodeFacts("0.1.0", "aaaa", "2.60.0", "3.11.7", "driver-host")
    check_versions(driver, {"n1": replace(driver, host="h1")})  # the host may differ
    with pytest.raises(ClusterError, match=r"node n2 on h2: thinktank 0\.2\.0 \(driver: 0\.1\.0\); source bbbb \(driver: aaaa\)"):
        check_versions(driver, {"n1": driver, "n2": NodeFacts("0.2.0", "bbbb", "2.60.0", "3.11.7", "h2")})
    with pytest.raises(ClusterError, match=r"ray 2\.59\.0 \(driver: 2\.60\.0\); python 3\.12\.1"):
        check_versions(driver, {"n3": NodeFacts("0.1.0", "aaaa", "2.59.0", "3.12.1", "h3")})


def test_the_source_digest_is_stable():
    assert source_digest() == source_digest() and len(source_digest()) == 12 and int(source_digest(), 16) >= 0


# --- the worker, in process --------------------------------------------------------------------------


async def test_a_worker_solves_like_a_local_run_and_reopens_its_engine_after_stop():
    arch = load_architecture("sample-8-vote", ["m"])
    worker = EvalWorker(WorkerJob(ScriptedEngine(), arch.spec, ["m"], grade_in_tasks=False))
    problem = math_problems(3)[2]
    record = await worker.solve(2, problem)
    async with ScriptedEngine().open() as engine:
        local = await solve_and_grade(engine, arch, Grader(engine.resources), problem, 2, None)
    assert (record.answer, record.passed, record.n_correct, record.tokens) == (
        local.answer,
        local.passed,
        local.n_correct,
        local.tokens,
    )
    engine_before = worker._ready[0]
    await worker.stop()
    assert worker._ready is None
    again = await worker.solve(2, problem)  # a restarted actor opens its engine on first use
    assert worker._ready[0] is not engine_before and again.answer == record.answer
    await worker.stop()


async def test_grading_that_runs_answers_goes_to_cpu_tasks_and_the_rest_stays():
    sent = []

    class Remote:
        async def _verdict(self, problem, answer):
            sent.append(problem.id)
            return Verdict(True, "graded remotely")

        def remote(self, problem, answer):
            return self._verdict(problem, answer)

    grader = TaskGrader(Resources(), Remote())
    code, math = code_problems(1)[0], math_problems(1)[0]
    assert (await grader.grade(code, "def add0(x):\n    return x\n")).reason == "graded remotely"
    assert (await grader.grade(math, "0")).passed  # math grades here: 0 + 0 = 0
    assert not (await grader.grade(code, None)).passed  # nothing extracted: no task
    assert sent == ["c0"]


def test_grading_stays_in_the_workers_on_a_cluster_without_cpus():
    job = WorkerJob(ScriptedEngine(), {}, ["m"])
    assert with_grading_placement(job, 2.0).grade_in_tasks and with_grading_placement(job, 1.0) is job
    assert not with_grading_placement(job, 0.0).grade_in_tasks
    assert not with_grading_placement(replace(job, grade_in_tasks=False), 8.0).grade_in_tasks


# --- the driver's queue, over fake worker handles -----------------------------------------------------


class ActorGone(Exception):
    pass


class TaskFailed(Exception):
    def __init__(self, cause):
        super().__init__(str(cause))
        self.cause = cause


FAKE_RAY = SimpleNamespace(exceptions=SimpleNamespace(RayActorError=ActorGone, RayTaskError=TaskFailed))


class FakeWorker:
    """`handle.solve.remote(position, problem)` like an actor's; `dies_after` calls, it is gone for good."""

    def __init__(self, dies_after=None, fails_on=None):
        self.calls, self.dies_after, self.fails_on = [], dies_after, fails_on
        self.solve = SimpleNamespace(remote=self._solve)

    async def _solve(self, position, problem):
        self.calls.append(problem.id)
        await asyncio.sleep(0.001)
        if self.dies_after is not None and len(self.calls) > self.dies_after:
            raise ActorGone("the actor died")
        if problem.id == self.fails_on:
            raise TaskFailed(BackendDied("llama-server exited with status -9"))
        async with ScriptedEngine().open() as engine:
            arch = load_architecture("single", ["m"])
            return await solve_and_grade(engine, arch, Grader(engine.resources), problem, position, None)


async def drain(tmp_path, workers, problems, attempts=3):
    store = RunStore(tmp_path / "run")
    progress = Progress()
    await _drain(FAKE_RAY, workers, list(enumerate(problems)), store, progress, 2, attempts, None)
    return store, progress


async def test_the_driver_commits_each_problem_once(tmp_path):
    workers = [FakeWorker(), FakeWorker()]
    store, progress = await drain(tmp_path, workers, math_problems(20))
    assert progress.done == 20 and sorted(r.problem_id for r in store.records()) == sorted(f"q{i}" for i in range(20))
    assert workers[0].calls and workers[1].calls  # both took work
    assert sum(len(w.calls) for w in workers) == 20


async def test_a_worker_gone_for_good_hands_its_problems_to_the_others(tmp_path):
    workers = [FakeWorker(dies_after=3), FakeWorker()]
    store, progress = await drain(tmp_path, workers, math_problems(20))
    assert progress.done == 20 and len({r.problem_id for r in store.records()}) == 20 == len(store.records())
    assert len(workers[0].calls) in (4, 5)  # 3 solved, then one failing call per lane


async def test_no_worker_left_is_a_cluster_error_and_the_done_rows_stay(tmp_path):
    with pytest.raises(ClusterError, match="every Ray worker was lost; .* problems are not done"):
        await drain(tmp_path, [FakeWorker(dies_after=2), FakeWorker(dies_after=2)], math_problems(20))
    assert 0 < len(RunStore(tmp_path / "run").records()) <= 4


async def test_a_problem_that_kills_every_worker_it_meets_is_named(tmp_path):
    workers = [FakeWorker(dies_after=0) for _ in range(3)]
    with pytest.raises(ClusterError, match=r"problem q\d+ was lost with 2 Ray workers"):
        await drain(tmp_path, workers, math_problems(1), attempts=2)


async def test_an_error_in_a_worker_is_raised_as_itself(tmp_path):
    with pytest.raises(BackendDied, match="status -9"):
        await drain(tmp_path, [FakeWorker(fails_on="q5")], math_problems(10))


async def test_a_second_row_for_a_problem_is_refused_by_the_store(tmp_path):
    """What makes "exactly once" checkable: the store never takes a duplicate silently."""
    store, _ = await drain(tmp_path, [FakeWorker()], math_problems(2))
    with pytest.raises(StoreError, match="already recorded"):
        store.add(store.records()[0])
