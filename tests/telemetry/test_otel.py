"""Converting a finished trace into spans: tree shape, GenAI attributes, token sums, times, traceparent, a down endpoint."""

from __future__ import annotations

import logging
import socket

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from thinktank.arch import Architecture, Node
from thinktank.engine import Engine
from thinktank.engine.cache import ResponseCache
from thinktank.engine.trace import CallRecord, TraceNode
from thinktank.exceptions import ConfigError
from thinktank.tasks.base import TaskInput
from thinktank.techniques.generate import Generate
from thinktank.techniques.vote import Vote
from thinktank.telemetry import resolve_endpoint
from thinktank.telemetry.otel import TraceExporter, open_exporter
from thinktank.testing import ScriptedBackend
from thinktank.usage import Usage


def exporter_pair() -> tuple[TraceExporter, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    return TraceExporter(memory, processor=SimpleSpanProcessor), memory


def by_name(spans):
    return {s.name: s for s in spans}


def handmade_trace() -> TraceNode:
    root = TraceNode("p1")
    gen = root.child("generate")
    gen.technique = "Generate"
    gen.calls.append(CallRecord("m", "b", [0, 1], Usage(prompt_tokens=10, completion_tokens=7, calls=1), "ok", 0.01, 0.2,
                                ["stop", "stop"], ended_s=0.25, temperature=0.7, max_tokens=64))  # fmt: skip
    gen.calls.append(CallRecord("m", "cache", [2], Usage(cache_hits=1, saved_tokens=9), "cached", 0.3, 0.0, ["stop"]))
    gen.ended_s = 0.35  # as `close()` would record it after the calls
    judge = gen.child("judge")
    judge.calls.append(CallRecord("j", "b", [0], Usage(prompt_tokens=5, completion_tokens=1, calls=1), "error", 0.3, 0.1,
                                  error="BackendTimeout: slow"))  # fmt: skip
    return root


def test_tree_shape_attributes_and_token_sums():
    exporter, memory = exporter_pair()
    trace = handmade_trace()
    exporter.export(trace, attributes={"thinktank.architecture": "sample-8-vote"})
    spans = memory.get_finished_spans()
    names = by_name(spans)
    assert set(names) == {"p1", "generate", "judge", "chat m", "chat j"}
    assert len(spans) == 6  # two calls of model m
    root, gen, judge = names["p1"], names["generate"], names["judge"]
    assert root.parent is None and root.attributes["thinktank.architecture"] == "sample-8-vote"
    assert gen.parent.span_id == root.context.span_id and judge.parent.span_id == gen.context.span_id
    assert gen.attributes["thinktank.technique"] == "Generate" and gen.attributes["thinktank.node"] == "generate"
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    calls = [s for s in spans if s.name.startswith("chat ")]
    for call in calls:
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.parent.span_id in (gen.context.span_id, judge.context.span_id)
    # the token sums of the call spans equal the trace's usage, and each node carries its rolled-up usage
    assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in calls) == trace.usage.prompt_tokens == 15
    assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in calls) == trace.usage.completion_tokens == 8
    assert root.attributes["gen_ai.usage.input_tokens"] == 15 and gen.attributes["gen_ai.usage.output_tokens"] == 8
    real = next(c for c in calls if c.attributes["thinktank.backend"] == "b" and c.name == "chat m")
    assert real.attributes["gen_ai.request.temperature"] == 0.7 and real.attributes["gen_ai.request.max_tokens"] == 64
    assert real.attributes["thinktank.cache_hit"] is False
    hit = next(c for c in calls if c.attributes["thinktank.backend"] == "cache")
    assert hit.attributes["thinktank.cache_hit"] is True and hit.attributes["thinktank.saved_tokens"] == 9
    failed = names["chat j"]
    assert failed.status.status_code.name == "ERROR" and failed.attributes["error.type"] == "BackendTimeout"


def test_span_times_follow_the_recorded_times():
    exporter, memory = exporter_pair()
    trace = handmade_trace()
    exporter.export(trace)
    names = by_name(memory.get_finished_spans())
    real = next(s for s in memory.get_finished_spans() if s.attributes.get("thinktank.backend") == "b" and s.name == "chat m")
    assert real.end_time - real.start_time == pytest.approx(0.24e9, abs=1e4)  # ended_s - started_s, not latency_s
    root, gen = names["p1"], names["generate"]
    assert real.start_time - root.start_time == pytest.approx(0.01e9, abs=1e4)
    assert root.start_time <= gen.start_time <= real.start_time and real.end_time <= root.end_time
    judge = names["judge"]  # never closed: ends with its last call
    assert judge.end_time == names["chat j"].end_time


async def test_a_real_architecture_run_exports_every_call(tmp_path):
    backend = ScriptedBackend(lambda request, i: f"#### {i % 2}")
    engine = Engine({"m": backend}, cache=ResponseCache(tmp_path / "cache.sqlite"))
    arch = Architecture(
        "vote-arch", [[Node("gen", Generate(["m"], n=4, temperature=0.8, max_tokens=32))], [Node("vote", Vote())]]
    )
    ctx = engine.context(name="q1")
    result = await arch.run(TaskInput("q1", "math", "1+1?"), ctx)
    exporter, memory = exporter_pair()
    exporter.export(ctx.node, attributes={"thinktank.architecture": arch.name})
    spans = memory.get_finished_spans()
    names = by_name(spans)
    assert names["gen"].attributes["thinktank.technique"] == "Generate"
    assert names["vote"].attributes["thinktank.technique"] == "Vote"
    calls = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(calls) == len(ctx.node.walk()[1].calls) > 0
    assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in calls) == result.usage.completion_tokens > 0
    assert all(c.attributes["gen_ai.request.max_tokens"] == 32 for c in calls)
    for c in calls:
        assert names["gen"].start_time <= c.start_time <= c.end_time <= names["gen"].end_time


def test_traceparent_makes_the_query_a_child_of_the_callers_span():
    exporter, memory = exporter_pair()
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    exporter.export(handmade_trace(), headers={"traceparent": header, "content-type": "application/json"})
    root = by_name(memory.get_finished_spans())["p1"]
    assert format(root.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(root.parent.span_id, "016x") == "b7ad6b7169203331" and root.parent.is_remote


def test_malformed_traceparent_starts_a_new_trace():
    exporter, memory = exporter_pair()
    exporter.export(handmade_trace(), headers={"traceparent": "garbage"})
    root = by_name(memory.get_finished_spans())["p1"]
    assert root.parent is None


def test_endpoints_from_flag_and_environment():
    assert resolve_endpoint(None, {}) is None
    assert resolve_endpoint("http://h:4318", {}) == "http://h:4318/v1/traces"
    assert resolve_endpoint("http://h:4318/v1/traces", {}) == "http://h:4318/v1/traces"
    assert resolve_endpoint(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == "http://c:4318/v1/traces"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:9/x"}
    assert resolve_endpoint(None, env) == "http://t:9/x"
    assert resolve_endpoint("http://flag:1", env) == "http://flag:1/v1/traces"  # the flag wins
    with pytest.raises(ConfigError, match="not an http"):
        resolve_endpoint("localhost:4318", {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_down_endpoint_warns_once_and_never_raises(caplog):
    exporter = open_exporter(f"http://127.0.0.1:{free_port()}", timeout_s=2.0)
    assert exporter is not None
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            exporter.export(handmade_trace())
            exporter.force_flush(5.0)
        exporter.shutdown()
    ours = [r for r in caplog.records if r.name == "thinktank.telemetry"]
    assert len(ours) == 1 and "did not take" in ours[0].getMessage()
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")]  # no per-batch noise


@pytest.mark.parametrize(
    "command", [["eval", "--task", "gsm-symbolic"], ["serve"], ["search", "--task", "gsm-symbolic", "--models", "m"]]
)
def test_a_malformed_otlp_url_fails_the_command_before_any_work(command, tmp_path):
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "thinktank.cli", *command, "--otlp", "localhost:4318"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=dict(os.environ, COLUMNS="200"))  # fmt: skip
    assert done.returncode != 0 and "is not an http(s) URL" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "runs").exists()  # nothing was started or written
