"""OpenTelemetry export end to end: `thinktank eval` / `thinktank serve` on the real llama-server (SmolLM2-135M)
into a real OTLP/HTTP receiver; and an endpoint that is down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from fake_openai_server import unused_port

from thinktank.eval.store import RunStore

from .receiver import Span, otlp_receiver, tree

pytestmark = pytest.mark.integration

SMALL_MODEL = "smollm2-135m-instruct"
TRACE_ID, PARENT = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


def thinktank(*args: str) -> list[str]:
    return [sys.executable, "-m", "thinktank.cli", *args]


def eval_run(tmp_path, otlp: str) -> subprocess.CompletedProcess[str]:
    arch = tmp_path / "vote.yaml"
    arch.write_text("name: tiny-vote\nlayers:\n  - generate: {n: 3, temperature: 0.8, max_tokens: 24}\n  - vote: {}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(thinktank("eval", "--task", "gsm-symbolic", "-m", SMALL_MODEL, "--limit", "2", "--arch", str(arch),
                                    "--run-dir", str(tmp_path / "run"), "--no-cache", "--slots", "2", "--otlp", otlp),
                          capture_output=True, text=True, timeout=600, env=dict(env, COLUMNS="200"))  # fmt: skip


def descendants(spans: list[Span], root: Span) -> list[Span]:
    children, out, todo = tree(spans), [], [root]
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(children.get(node.span_id, []))
    return out


def test_eval_exports_each_problem_as_a_span_tree_whose_tokens_match_the_store(tmp_path):
    with otlp_receiver() as receiver:
        done = eval_run(tmp_path, receiver.url)
        assert done.returncode == 0, done.stderr[-3000:]
        spans = receiver.wait_for(lambda s: len([x for x in s if "thinktank.problem.id" in x.attributes]) == 2)
    store = RunStore(tmp_path / "run")
    try:
        records = {r.problem_id: r for r in store.records()}
    finally:
        store.close()
    roots = [s for s in spans if "thinktank.problem.id" in s.attributes]
    assert {r.attributes["thinktank.problem.id"] for r in roots} == set(records)
    for root in roots:
        record = records[root.attributes["thinktank.problem.id"]]
        assert root.parent_span_id == "" and root.attributes["thinktank.architecture"] == "tiny-vote"
        assert root.attributes["thinktank.passed"] == record.passed and root.service == "thinktank"
        family = descendants(spans, root)
        assert {s.trace_id for s in family} == {root.trace_id}
        nodes = [s for s in family if "thinktank.technique" in s.attributes]
        assert sorted(s.attributes["thinktank.technique"] for s in nodes) == ["Generate", "Vote"]
        assert all(s.parent_span_id == root.span_id for s in nodes)
        calls = [s for s in family if s.attributes.get("gen_ai.operation.name") == "chat"]
        assert len(calls) == record.calls > 0
        gen = next(s for s in nodes if s.attributes["thinktank.technique"] == "Generate")
        for c in calls:
            assert c.parent_span_id == gen.span_id and c.name == f"chat {SMALL_MODEL}"
            assert c.attributes["gen_ai.request.model"] == SMALL_MODEL and c.attributes["gen_ai.request.max_tokens"] == 24
            assert c.attributes["gen_ai.request.temperature"] == pytest.approx(0.8)
            assert c.attributes["thinktank.cache_hit"] is False
            assert gen.start_ns <= c.start_ns < c.end_ns <= gen.end_ns <= root.end_ns
        assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in calls) == record.prompt_tokens > 0
        assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in calls) == record.completion_tokens > 0
        assert root.attributes["gen_ai.usage.output_tokens"] == record.completion_tokens
        # the root spans the query: at least as long as the stored wall latency of the problem
        assert (root.end_ns - root.start_ns) / 1e9 >= record.latency_s - 0.05


def test_eval_with_the_endpoint_down_succeeds_and_warns_once(tmp_path):
    started = time.monotonic()
    done = eval_run(tmp_path, f"http://127.0.0.1:{unused_port()}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("did not take") == 1, done.stderr[-3000:]
    assert "Failed to export" not in done.stderr  # the SDK's per-batch errors are folded into the one warning
    store = RunStore(tmp_path / "run")
    try:
        assert len(store.records()) == 2
    finally:
        store.close()
    assert time.monotonic() - started < 300  # bounded (the real bound is one export timeout at exit)


def test_serve_exports_each_request_under_the_callers_traceparent(tmp_path):
    port = unused_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with otlp_receiver() as receiver:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.url  # the standard variable, not --otlp
        proc = subprocess.Popen(thinktank("serve", "--arch", "single", "-m", SMALL_MODEL, "--port", str(port), "--slots", "1",
                                          "--no-cache"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 240
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
                assert time.monotonic() < deadline, "thinktank serve did not come up"
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            body = {"model": "single", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 12}
            response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120,
                                  headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"})  # fmt: skip
            assert response.status_code == 200, response.text
            answer = response.json()
            spans = receiver.wait_for(lambda s: any(x.trace_id == TRACE_ID and x.parent_span_id == PARENT for x in s))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            finally:
                proc.kill() if proc.poll() is None else None
    root = next(s for s in spans if s.trace_id == TRACE_ID and s.parent_span_id == PARENT)
    assert root.attributes["thinktank.request.id"] == answer["id"] and root.service == "thinktank-serve"
    assert root.attributes["thinktank.architecture"] == "single"
    family = descendants(spans, root)
    calls = [s for s in family if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(calls) == answer["thinktank"]["calls"] == 1
    assert calls[0].attributes["gen_ai.usage.input_tokens"] == answer["usage"]["prompt_tokens"]
    assert calls[0].attributes["gen_ai.usage.output_tokens"] == answer["usage"]["completion_tokens"] > 0
    assert calls[0].attributes["gen_ai.request.max_tokens"] == 12
    assert proc.returncode is not None
