"""The shared cache with the real parts: `thinktank ask` processes, a real llama-server, a real PostgreSQL server.

Three processes ask the real smollm2 server the same uncached question through one PostgreSQL cache; the server's
own /metrics say it generated the answer once. To make the processes overlap for sure, the test holds the schema
lock every cache open takes, until all three wait on it, then lets them go together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest

from thinktank._postgres import SCHEMA_LOCK

from .conftest import SMALL_MODEL, server_metrics

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def waiting_on(conn: psycopg.Connection, lock: int) -> int:
    unsigned = lock & ((1 << 64) - 1)
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s AND objid = %s",
        (unsigned >> 32, unsigned & 0xFFFFFFFF),
    ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.timeout(300)
def test_ask_processes_sharing_a_postgres_cache_make_one_call_to_llama_server(small_server, postgres_url):
    processes = 3
    before = server_metrics(small_server)["llamacpp:tokens_predicted_total"]
    argv = [sys.executable, "-m", "thinktank.cli", "ask", "Count from 1 to 40 in words, one per line.",
            "-m", SMALL_MODEL, "--backend", small_server.base_url, "--temperature", "0.7", "--seed", "5",
            "--max-tokens", "64", "--cache", postgres_url]  # fmt: skip
    env = dict(os.environ, COLUMNS="200")
    with psycopg.connect(postgres_url, autocommit=True) as gate, psycopg.connect(postgres_url, autocommit=True) as probe:
        gate.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        workers = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                   for _ in range(processes)]  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while waiting_on(probe, SCHEMA_LOCK) < processes:
                assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
                time.sleep(0.05)
            gate.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))  # all three go at once
            outputs = [w.communicate(timeout=180) for w in workers]
        finally:
            for w in workers:
                w.kill()
        assert all(w.returncode == 0 for w in workers), [err for _, err in outputs]
        rows = probe.execute("SELECT text, completion_tokens FROM thinktank_responses").fetchall()
    assert len(rows) == 1
    text, completion_tokens = rows[0]
    assert completion_tokens > 0 and all(text.strip()[:40] in out for out, _ in outputs)
    spent = server_metrics(small_server)["llamacpp:tokens_predicted_total"] - before
    assert spent == completion_tokens  # one generation, not three


@pytest.mark.timeout(600)
def test_eval_keeps_results_and_samples_on_postgres_and_a_rerun_resumes(small_server, postgres_url, tmp_path):
    """`thinktank eval --store URL --cache URL` on the real server: the results and samples land in PostgreSQL, and a
    re-run (as from another machine: another run dir parent, same run name) does nothing twice."""
    argv = [sys.executable, "-m", "thinktank.cli", "eval", "--task", "gsm-symbolic", "-m", SMALL_MODEL,
            "--backend", small_server.base_url, "--limit", "2", "--slots", "2", "--store", postgres_url,
            "--cache", postgres_url]  # fmt: skip
    env = dict(os.environ, COLUMNS="200")
    first = subprocess.run([*argv, "--run-dir", str(tmp_path / "a" / "gsm")], capture_output=True, text=True, env=env,
                           timeout=300)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"{postgres_url}#gsm" in " ".join(first.stdout.split())
    before = server_metrics(small_server)["llamacpp:tokens_predicted_total"]
    again = subprocess.run([*argv, "--run-dir", str(tmp_path / "b" / "gsm")], capture_output=True, text=True, env=env,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 of 2 problems already done" in " ".join(again.stdout.split())
    assert server_metrics(small_server)["llamacpp:tokens_predicted_total"] == before
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM thinktank_results WHERE run = 'gsm'").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM thinktank_responses").fetchone()[0] >= 2
    assert not (tmp_path / "a" / "gsm" / "results.sqlite").exists()
    report = subprocess.run([sys.executable, "-m", "thinktank.cli", "report", str(tmp_path / "c" / "gsm"), "--store",
                             postgres_url, "--html", str(tmp_path / "r.html")], capture_output=True, text=True, env=env,
                            timeout=120)  # fmt: skip
    assert report.returncode == 0 and "#gsm" in report.stdout, report.stderr[-3000:]
