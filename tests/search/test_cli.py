"""`thinktank search` from the command line: clear errors before any work, and a whole run against a fake server."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from fake_openai_server import FakeOpenAIServer

from .fakes import problems, reply

ENV = dict(os.environ, COLUMNS="200")


def write_task(path, count=24):
    lines = []
    for p in problems(count):
        t = p.input
        lines.append(json.dumps({"id": t.problem_id, "kind": "code", "prompt": t.prompt, "entry_point": t.entry_point,
                                 "public_tests": list(t.public_tests), "meta": t.meta,
                                 "hidden": {"test_code": p.hidden.test_code}}))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def search(*args, timeout=600):
    cmd = [sys.executable, "-m", "thinktank.cli", "search", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)


def test_tiny_splits_unknown_models_and_bad_budgets_are_clear_errors(tmp_path):
    task = write_task(tmp_path / "t.jsonl")
    out = search("--task", task, "--models", "qwen2.5-coder-0.5b-instruct", "--dev", 3, "--test", 10, "--run-dir", tmp_path / "r")
    assert out.returncode == 2 and "dev split needs at least 10 problems" in out.stderr
    out = search(
        "--task", task, "--models", "qwen2.5-coder-0.5b-instruct", "--dev", 20, "--test", 10, "--run-dir", tmp_path / "r"
    )
    assert out.returncode == 2 and "has 24 problems; --dev 20 --test 10 needs 30" in out.stderr
    out = search("--task", task, "--models", "qwen2.5-coder-0.5b-instruct,no-such-model", "--dev", 10, "--test", 10,
                 "--run-dir", tmp_path / "r")  # fmt: skip
    assert out.returncode == 2 and "unknown model 'no-such-model'" in out.stderr
    out = search("--task", task, "--models", "x", "--budget-per-query", "lots", "--run-dir", tmp_path / "r")
    assert out.returncode == 2 and "give tokens (5000) or dollars ($0.002)" in out.stderr
    assert not (tmp_path / "r").exists()  # nothing was started or written


def test_a_whole_search_through_the_cli(tmp_path):
    task = write_task(tmp_path / "t.jsonl")

    def text_for(body, index):
        request = SimpleNamespace(model=body["model"], seed=body.get("seed"), messages=body["messages"],
                                  temperature=body.get("temperature", 0.0))  # fmt: skip
        return reply(request)

    with FakeOpenAIServer(native_n=False, text_for=text_for) as server:
        run_dir = tmp_path / "run"
        out = search("--task", task, "--models", "small,big", "--backend", server.base_url, "--dev", 10, "--test", 10,
                     "--trials", 25, "--pool-n", 2, "--max-n", 4, "--draws", 2, "--run-dir", run_dir, "--no-cache",
                     "--budget-per-query", 400)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Pareto front" in out.stdout and "chosen:" in out.stdout and "test:" in out.stdout
    assert "samples small T=0.8" in out.stderr and "trials" in out.stderr and "confirming" in out.stderr  # progress
    data = json.loads((run_dir / "pareto.json").read_text())
    assert data["trials"] == 25 and data["chosen"]["tokens"] <= 400 and data["confirmation"]["problems"] == 10
    assert yaml.safe_load((run_dir / "chosen.yaml").read_text())["layers"]
    assert (run_dir / "report.html").exists() and (run_dir / "study.db").exists() and (run_dir / "pool.sqlite").exists()


@pytest.mark.parametrize("flag", ["--help"])
def test_help_lists_the_options(flag):
    out = subprocess.run([sys.executable, "-m", "thinktank.cli", "search", flag], capture_output=True, text=True, env=ENV)
    for option in (
        "--budget-per-query",
        "--dev",
        "--test",
        "--trials",
        "--run-dir",
        "--pool-n",
        "--no-confirm",
        "--compare-runs",
        "--ray",
        "--ray-workers",
        "--study-storage",
        "--study-name",
    ):
        assert option in out.stdout


def test_a_bad_study_storage_or_ray_address_exits_2_before_any_work(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens once it is closed
    task = write_task(tmp_path / "t.jsonl")
    base = ["--task", task, "--models", "small", "--backend", "http://127.0.0.1:1/v1", "--dev", 10, "--test", 10,
            "--run-dir", tmp_path / "r"]  # fmt: skip
    out = search(*base, "--study-storage", "nosuchdb://h/db")
    assert out.returncode == 2 and "no database driver for nosuchdb" in out.stderr
    out = search(*base, "--study-storage", f"postgresql://u:pw@127.0.0.1:{port}/db")
    assert out.returncode == 2 and "cannot open the study storage" in out.stderr and ":pw@" not in out.stderr
    out = search(*base, "--ray", f"127.0.0.1:{port}")
    assert out.returncode == 2 and f"cannot reach the Ray head at 127.0.0.1:{port}" in out.stderr
    assert not (tmp_path / "r").exists()  # nothing was started or written


def test_a_retrieval_qa_search_through_the_cli_evaluates_each_configuration_fresh(tmp_path):
    def text_for(body, index):  # a reader that always answers one name: the search still runs end to end
        return "Answer: Quillmarsh"

    with FakeOpenAIServer(native_n=False, text_for=text_for) as server:
        run_dir = tmp_path / "run"
        out = search("--task", "rag-synth", "--models", "small", "--backend", server.base_url, "--dev", 10, "--test", 10,
                     "--trials", 4, "--sampler", "tpe", "--run-dir", run_dir, "--no-cache")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Pareto front" in out.stdout and "evaluated fresh" in out.stdout and "test:" in out.stdout
    assert "each a fresh eval" in out.stderr and "confirming" in out.stderr
    data = json.loads((run_dir / "pareto.json").read_text())
    assert data["space"] == "rag" and data["trials"] == 4 and data["confirmation"]["problems"] == 10
    assert "retrieve" in yaml.safe_load((run_dir / "chosen.yaml").read_text())["layers"][0]
    assert not (run_dir / "pool.sqlite").exists() and (run_dir / "trials").is_dir()
