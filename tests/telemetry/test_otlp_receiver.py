"""The exporter over real OTLP/HTTP into a real receiver (protobuf decoded), with a scripted backend behind a served app."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")

from serve.live import LiveServer

from thinktank.arch import build_architecture
from thinktank.engine import Engine
from thinktank.serve import ServeSettings, create_app
from thinktank.telemetry import exporting
from thinktank.testing import ScriptedBackend

from .receiver import otlp_receiver, tree

TRACE_ID, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_served_requests_export_one_trace_each_under_the_callers_traceparent():
    backend = ScriptedBackend(lambda request, i: f"#### {i}")
    engine = Engine({"m": backend})
    arch = build_architecture({"name": "vote", "layers": [{"generate": {"n": 3, "max_tokens": 8}}, {"vote": {}}]}, ["m"])
    with otlp_receiver() as receiver, exporting(receiver.url, service_name="thinktank-serve") as telemetry:
        live = LiveServer(create_app(engine, [arch], ServeSettings(use_cache=False), telemetry)).start()
        try:
            client = live.client()
            headers = {"traceparent": f"00-{TRACE_ID}-{PARENT}-01"}
            response = client.chat.completions.create(model="vote", messages=[{"role": "user", "content": "hi"}],
                                                      extra_headers=headers)  # fmt: skip
            streamed = list(client.chat.completions.create(model="vote", messages=[{"role": "user", "content": "hi"}],
                                                           stream=True, stream_options={"include_usage": True}))  # fmt: skip
        finally:
            live.stop()
        spans = receiver.wait_for(lambda s: len([x for x in s if "thinktank.request.id" in x.attributes]) == 2)
    roots = [s for s in spans if "thinktank.request.id" in s.attributes]
    child_of_caller = next(s for s in roots if s.trace_id == TRACE_ID)
    assert child_of_caller.parent_span_id == PARENT and child_of_caller.service == "thinktank-serve"
    assert child_of_caller.attributes["thinktank.request.id"] == response.id
    fresh = next(s for s in roots if s is not child_of_caller)
    assert fresh.trace_id != TRACE_ID and fresh.parent_span_id == ""  # no traceparent: a new trace
    assert fresh.attributes["thinktank.request.id"] == streamed[0].id
    children = tree(spans)
    nodes = {s.attributes["thinktank.technique"] for s in children[child_of_caller.span_id]}
    assert nodes == {"ClientGenerate", "Vote"}  # serve runs the last generate as the client-fields passthrough
    gen = next(s for s in children[child_of_caller.span_id] if s.attributes["thinktank.technique"] == "ClientGenerate")
    calls = children[gen.span_id]
    assert {c.name for c in calls} == {"chat m"} and len(calls) == 3
    assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in calls) == response.usage.completion_tokens
    assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in calls) == response.usage.prompt_tokens
    assert all(child_of_caller.start_ns <= c.start_ns <= c.end_ns <= child_of_caller.end_ns for c in calls)


def test_no_endpoint_means_no_exporter(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    with exporting(None) as telemetry:
        assert telemetry is None


def test_environment_endpoint_turns_export_on(monkeypatch):
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        with exporting(None) as telemetry:
            assert telemetry is not None
            from thinktank.engine.trace import TraceNode

            telemetry.export(TraceNode("q"))
        spans = receiver.wait_for(lambda s: len(s) == 1)  # flushed when the block closed
    assert spans[0].name == "q" and spans[0].parent_span_id == ""
