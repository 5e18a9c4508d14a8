"""`thinktank eval` end to end on the real server: SIGKILL mid-run, resume, nothing lost or doubled."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from .conftest import SMALL_MODEL
from .test_llama_server import llama_server_pids

pytestmark = pytest.mark.integration


def rows(db):
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as conn:
            return [r[0] for r in conn.execute("SELECT problem_id FROM results")]
    except sqlite3.OperationalError:
        return []


def eval_cmd(run_dir, arch):
    return [sys.executable, "-m", "thinktank.cli", "eval", "--task", "gsm-symbolic", "-m", SMALL_MODEL, "--limit", "10",
            "--arch", str(arch), "--run-dir", str(run_dir), "--no-cache", "--concurrency", "2", "--slots", "2"]  # fmt: skip


def start_eval_until_three_done(tmp_path, env):
    """A short eval started in the background and left running once 3 problems are committed."""
    arch = tmp_path / "short.yaml"
    arch.write_text("name: short\nlayers:\n  - generate: {n: 1, temperature: 0.0, max_tokens: 48}\n")
    run_dir, db = tmp_path / "run", tmp_path / "run" / "results.sqlite"
    proc = subprocess.Popen(eval_cmd(run_dir, arch), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 240
    while len(rows(db)) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "eval made no progress"
        time.sleep(0.1)
    return proc, arch, run_dir, db


def test_killed_eval_resumes_with_nothing_lost_or_duplicated(tmp_path):
    servers_before = llama_server_pids()
    env = dict(os.environ, COLUMNS="200")
    proc, arch, run_dir, db = start_eval_until_three_done(tmp_path, env)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = rows(db)
    assert 3 <= len(done_at_kill) < 10
    deadline = time.monotonic() + 20
    while llama_server_pids() - servers_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not llama_server_pids() - servers_before  # the embedded server died with it

    resumed = subprocess.run(eval_cmd(run_dir, arch), capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(done_at_kill)} of 10 problems already done" in resumed.stdout
    final = rows(db)
    assert len(final) == 10 and len(set(final)) == 10
    assert set(done_at_kill) <= set(final)

    report = subprocess.run([sys.executable, "-m", "thinktank.cli", "report", str(run_dir), "--html", str(tmp_path / "r.html")],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert report.returncode == 0 and (tmp_path / "r.html").read_text().count("<circle") == 1


def test_a_server_killed_mid_eval_stops_the_run_with_its_exit_status_and_log(tmp_path):
    """The engine dies (OOM killer, kill -9): the run stops at once naming the server's fate and log; a re-run resumes."""
    servers_before = llama_server_pids()
    env = dict(os.environ, COLUMNS="400")
    proc, arch, run_dir, db = start_eval_until_three_done(tmp_path, env)
    (server,) = llama_server_pids() - servers_before
    os.kill(server, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    message = " ".join(stderr.decode().split())
    assert proc.returncode == 2, message[-2000:]
    assert "llama-server" in message and "was killed by SIGKILL" in message, message[-2000:]
    assert "llama-server-smollm2-135m-instruct.log" in message and "Re-run the command to resume" in message
    assert "thinktank backend start" not in message  # not the advice for a server that was never started
    done_at_kill = rows(db)
    assert 3 <= len(done_at_kill) < 10 and len(set(done_at_kill)) == len(done_at_kill)

    resumed = subprocess.run(eval_cmd(run_dir, arch), capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(done_at_kill)} of 10 problems already done" in resumed.stdout
    final = rows(db)
    assert len(final) == 10 and len(set(final)) == 10 and set(done_at_kill) <= set(final)


def test_eval_unknown_task_and_bad_arch_are_clear_errors(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "thinktank.cli", "eval", "--task", "mmlu"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown task 'mmlu'" in bad.stderr and "humaneval" in bad.stderr
    arch = tmp_path / "a.yaml"
    arch.write_text("layers:\n  - generate: {n: -1}\n")
    bad = subprocess.run([sys.executable, "-m", "thinktank.cli", "eval", "--task", "humaneval", "--arch", str(arch)],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "a.yaml:2" in bad.stderr and "'n'" in bad.stderr
