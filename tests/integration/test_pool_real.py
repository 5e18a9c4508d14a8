"""A pool of two real llama-server replicas: one is SIGKILLed mid-eval and the run completes on the other."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from thinktank.backends.config import load_backends
from thinktank.backends.llama_server import LlamaServer, server_metrics
from thinktank.engine import Engine
from thinktank.types import GenerationRequest

from .conftest import SMALL_MODEL

pytestmark = pytest.mark.integration

PROBLEMS = 8


def committed(db) -> list[str]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as conn:
            return [r[0] for r in conn.execute("SELECT problem_id FROM results")]
    except sqlite3.OperationalError:
        return []


def served(server: LlamaServer) -> float:
    """Tokens the replica generated so far (its own counter)."""
    return server_metrics(server.base_url).get("llamacpp:tokens_predicted_total", 0.0)


def busy(server: LlamaServer) -> float:
    return server_metrics(server.base_url).get("llamacpp:requests_processing", 0.0)


@pytest.fixture
def replicas(tmp_path):
    servers = [LlamaServer(SMALL_MODEL, slots=2, ctx_per_slot=1024, threads=1) for _ in range(2)]
    for i, server in enumerate(servers):
        server.log_path = tmp_path / f"replica{i}.log"

    async def start() -> None:
        await asyncio.gather(*(s.start() for s in servers))

    try:
        asyncio.run(start())
        yield servers
    finally:
        for server in servers:
            server.terminate(timeout_s=5)


def test_a_replica_killed_mid_eval_the_run_completes_on_the_other(tmp_path, replicas):
    doomed, survivor = replicas
    backends = tmp_path / "backends.yaml"
    backends.write_text(
        "models:\n  smol:\n    kind: llama.cpp\n    model: "
        + SMALL_MODEL
        + "\n    endpoints:\n"
        + "".join(f"      - {{url: {s.base_url}, slots: 2}}\n" for s in replicas)
        + "health_interval_s: 0.5\n"
    )
    arch = tmp_path / "short.yaml"
    arch.write_text("name: short\nlayers:\n  - generate: {n: 1, temperature: 0.0, max_tokens: 48}\n")
    run_dir, db = tmp_path / "run", tmp_path / "run" / "results.sqlite"
    command = [sys.executable, "-m", "thinktank.cli", "eval", "--task", "gsm-symbolic", "-m", "smol", "--backends", str(backends),
               "--limit", str(PROBLEMS), "--arch", str(arch), "--run-dir", str(run_dir), "--no-cache"]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, COLUMNS="300"))  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        # mid-eval: problems already committed, and the doomed replica in the middle of a call
        while not (len(committed(db)) >= 2 and served(doomed) > 0 and busy(doomed) > 0):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the eval did not get going on both replicas"
            time.sleep(0.05)
        done_at_kill = len(committed(db))
        survivor_before = served(survivor)
        assert done_at_kill < PROBLEMS
        assert doomed.process is not None
        os.kill(doomed.process.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    final = committed(db)
    assert len(final) == PROBLEMS and len(set(final)) == PROBLEMS  # every problem committed, once
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results WHERE error IS NOT NULL").fetchone() == (0,)
    assert served(survivor) > survivor_before  # the rest ran on the survivor
    flat = " ".join(stderr.split())
    assert f"replica {doomed.base_url} is out" in flat  # the pool said so, and went on
    assert time.monotonic() - started < 120


async def test_one_query_stays_on_one_replica_and_a_stalled_replica_is_checked_out_and_back_in(tmp_path, replicas):
    """Real servers: seeded samples of one prompt all run on one replica; that replica stalled (SIGSTOP) times out,
    is taken out and polled, the call fails over; resumed (SIGCONT), its /health brings it back and affinity with it."""
    backends = tmp_path / "backends.yaml"
    backends.write_text(
        "models:\n  smol:\n    kind: llama.cpp\n    timeout_s: 3\n    endpoints:\n"
        + "".join(f"      - {{url: {s.base_url}, slots: 2}}\n" for s in replicas)
        + "health_interval_s: 0.2\nhealth_timeout_s: 1\nmax_retries: 1\n"
    )
    pool = load_backends(backends).build()["smol"]
    request = GenerationRequest.from_prompt("Name a colour.", "smol", max_tokens=8, temperature=0.8)
    async with pool:
        ctx = Engine({"smol": pool}).context()
        before = [served(s) for s in replicas]
        samples = [(await ctx.generate(request.with_(seed=seed)))[0] for seed in range(4)]
        grew = [i for i, s in enumerate(replicas) if served(s) > before[i]]
        assert len(grew) == 1  # the query's samples, asked one after another, all ran on one replica
        assert all(c.usage.cached_prompt_tokens > 0 for c in samples[1:])  # which reused the prompt it had cached
        home, other = grew[0], 1 - grew[0]
        pid = replicas[home].process.pid  # type: ignore[union-attr]
        other_before = served(replicas[other])
        os.kill(pid, signal.SIGSTOP)
        try:
            response = await pool.generate(request.with_(seed=10))  # times out on home, fails over at once
            assert response.choices[0].text and served(replicas[other]) > other_before
            assert not pool.replicas[home].up and "BackendTimeout" in pool.replicas[home].reason
            deadline = time.monotonic() + 20
            while "health check timed out" not in pool.replicas[home].reason:  # polled, with a deadline, while stalled
                assert time.monotonic() < deadline, pool.replicas[home].reason
                await asyncio.sleep(0.05)
            assert not pool.replicas[home].up
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while not pool.replicas[home].up:  # its /health answers again: back in
            assert time.monotonic() < deadline, pool.replicas[home].reason
            await asyncio.sleep(0.05)
        home_before = served(replicas[home])
        await pool.generate(request.with_(seed=11))
        assert served(replicas[home]) > home_before  # and the prompt's calls go home again
