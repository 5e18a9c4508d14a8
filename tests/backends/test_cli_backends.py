"""`--backends FILE` on the commands: a run over a pool of two servers, and a bad file failing before any work."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
from fake_openai_server import FakeOpenAIServer

ENV = dict(os.environ, COLUMNS="200", POOL_TEST_KEY="pool-secret")


def thinktank(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "thinktank.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=ENV)  # fmt: skip


def test_eval_over_a_pool_of_two_servers_uses_both_under_the_users_model_name(tmp_path):
    arch = tmp_path / "a.yaml"
    arch.write_text("name: one\nlayers:\n  - generate: {n: 1, max_tokens: 16}\n")
    with FakeOpenAIServer() as one, FakeOpenAIServer() as two:
        backends = tmp_path / "backends.yaml"
        backends.write_text(
            "models:\n  my-model:\n    model: served-model\n    api_key_env: POOL_TEST_KEY\n"
            "    prices: {prompt_per_mtok: 1000000, completion_per_mtok: 0}\n    endpoints:\n"
            f"      - {{url: {one.base_url}, slots: 2}}\n      - {{url: {two.base_url}, slots: 2}}\n"
        )
        run = tmp_path / "run"
        out = thinktank("eval", "--task", "gsm-symbolic", "--limit", 12, "-m", "my-model", "--backends", backends,
                        "--arch", arch, "--run-dir", run, "--no-cache")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    with sqlite3.connect(run / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(*), SUM(cost_usd) > 0 FROM results").fetchone() == (12, 1)  # priced by the file
    assert one.chat_requests and two.chat_requests and len(one.chat_requests) + len(two.chat_requests) == 12
    assert {r.body["model"] for r in one.chat_requests + two.chat_requests} == {"served-model"}
    assert {r.headers["authorization"] for r in one.chat_requests + two.chat_requests} == {"Bearer pool-secret"}


@pytest.mark.parametrize("command", [["eval", "--task", "gsm-symbolic"], ["ask", "hi"], ["serve"],
                                     ["search", "--task", "gsm-symbolic", "--models", "m"]])  # fmt: skip
def test_a_bad_backends_file_fails_the_command_before_any_work_with_its_line(tmp_path, command):
    bad = tmp_path / "backends.yaml"
    bad.write_text("models:\n  m:\n    endpoints:\n      - {url: http://127.0.0.1:9/v1, slots: 2, weight: 1}\n")
    out = thinktank(*command, "--backends", bad, "--run-dir", tmp_path / "run") if command[0] in ("eval", "search") else \
        thinktank(*command, "--backends", bad)  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"{bad}:4: models.m.endpoints[0].weight: unknown key 'weight'" in " ".join(out.stderr.split())
    assert not (tmp_path / "run").exists()


def test_eval_with_every_replica_down_stops_with_an_error_naming_each(tmp_path):
    from fake_openai_server import unused_port

    urls = [f"http://127.0.0.1:{unused_port()}/v1" for _ in range(2)]
    backends = tmp_path / "backends.yaml"
    backends.write_text("models:\n  m:\n    endpoints:\n" + "".join(f"      - {{url: {u}}}\n" for u in urls) + "max_retries: 1\n")
    out = thinktank("eval", "--task", "gsm-symbolic", "--limit", 2, "-m", "m", "--backends", backends,
                    "--run-dir", tmp_path / "run", "--no-cache")  # fmt: skip
    flat = " ".join(out.stderr.split())
    assert out.returncode == 2, out.stderr[-2000:]
    assert "every replica of pool m is down" in flat
    for url in urls:
        assert f"{url}: BackendUnreachable: cannot reach backend at {url}/chat/completions" in flat
