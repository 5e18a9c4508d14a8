"""A finished query's trace tree as OpenTelemetry spans (GenAI semantic conventions), sent over OTLP/HTTP.

    exporter = TraceExporter.open("http://localhost:4318")       # or `open_exporter(None)`: $OTEL_EXPORTER_OTLP_ENDPOINT
    ...                                                            # after `arch.run(task, ctx)`:
    exporter.export(ctx.node, attributes={"thinktank.architecture": arch.name}, headers=request.headers)
    exporter.shutdown()                                            # flushes, bounded by the export timeout

One span per trace node (`thinktank.node`, `thinktank.technique`), one child span per LLM call
(`gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.usage.*`, ...). Spans are made after the query ran,
from the times the trace recorded, so the query's code path knows nothing of OpenTelemetry.

Each exporter owns its `TracerProvider` (never the process-global one). An endpoint that is down costs a
warning, once, and the spans of the next `RETRY_AFTER_S`: a query never fails and exit never waits longer
than one export timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from thinktank.engine.trace import CallRecord, TraceNode
from thinktank.telemetry.endpoint import resolve_endpoint

try:
    from opentelemetry import trace as otel_trace
    from opentelemetry.context import Context as OtelContext
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult, SpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("OpenTelemetry export needs the `otel` extra: pip install 'thinktank[otel]'") from exc

__all__ = ["RETRY_AFTER_S", "TraceExporter", "add_trace", "open_exporter"]

logger = logging.getLogger("thinktank.telemetry")
RETRY_AFTER_S = 30.0  # after a failed export, batches are dropped unsent this long (exit waits for one timeout, not many)
_SDK_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"  # logs every failed batch; we warn once instead
_PROPAGATOR = TraceContextTextMapPropagator()


def open_exporter(url: str | None, *, service_name: str = "thinktank", timeout_s: float = 5.0) -> TraceExporter | None:
    """An exporter if `--otlp URL` or the OTEL environment names an endpoint, else None (export off)."""
    endpoint = resolve_endpoint(url)
    if endpoint is None:
        return None
    return TraceExporter(OTLPSpanExporter(endpoint=endpoint, timeout=timeout_s), service_name=service_name, endpoint=endpoint)


class TraceExporter:
    """Turns finished traces into spans through its own TracerProvider; `shutdown` flushes what is queued."""

    def __init__(
        self,
        span_exporter: SpanExporter,
        *,
        service_name: str = "thinktank",
        endpoint: str = "",
        processor: type[SpanProcessor] | None = None,
    ) -> None:
        """`processor` defaults to a BatchSpanProcessor (a SimpleSpanProcessor suits tests that read spans at once)."""
        self._guard = _WarnOnce(span_exporter, endpoint)
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self.provider.add_span_processor((processor or BatchSpanProcessor)(self._guard))  # type: ignore[call-arg]
        self.tracer = self.provider.get_tracer("thinktank")

    def export(
        self, trace: TraceNode, *, attributes: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Queue `trace`'s spans; with `headers` carrying a W3C `traceparent`, the query's span is its child."""
        parent = _PROPAGATOR.extract(carrier=dict(headers)) if headers is not None else None
        try:
            add_trace(self.tracer, trace, attributes=attributes, parent=parent)
        except Exception:  # a trace we cannot convert must not fail the query it describes
            logger.warning("could not export the trace of %s as OpenTelemetry spans", trace.name, exc_info=True)

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        return self.provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        self.provider.shutdown()
        self._guard.release()


def add_trace(
    tracer: Tracer, root: TraceNode, *, attributes: Mapping[str, Any] | None = None, parent: OtelContext | None = None
) -> None:
    """Emit `root` (a finished query) as spans on `tracer`: nodes nest as in the trace, calls under their node."""
    clock = _Clock(root.origin)
    end = root.ended_s if root.ended_s is not None else max(root.now(), _node_end(root))
    _add_node(tracer, root, clock, parent, dict(attributes or {}), end_s=end)


def _add_node(
    tracer: Tracer, node: TraceNode, clock: _Clock, parent: OtelContext | None, extra: dict[str, Any], *, end_s: float | None
) -> None:
    attributes: dict[str, Any] = {"thinktank.node": node.name, **extra}
    if node.technique:
        attributes["thinktank.technique"] = node.technique
    usage = node.usage
    attributes.update({
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
        "thinktank.usage.calls": usage.calls,
        "thinktank.usage.cache_hits": usage.cache_hits,
        "thinktank.usage.cost_usd": usage.cost_usd,
    })  # fmt: skip
    end = end_s if end_s is not None else _node_end(node)
    span = tracer.start_span(node.name, context=parent, kind=SpanKind.INTERNAL, attributes=attributes,
                             start_time=clock.ns(node.started_s))  # fmt: skip
    if node.error:
        span.set_status(Status(StatusCode.ERROR, node.error))
    inside = otel_trace.set_span_in_context(span, parent)
    for call in node.calls:
        _add_call(tracer, call, clock, inside)
    for child in node.children:
        _add_node(tracer, child, clock, inside, {}, end_s=None)
    span.end(end_time=clock.ns(max(end, node.started_s)))


def _add_call(tracer: Tracer, call: CallRecord, clock: _Clock, parent: OtelContext) -> None:
    u = call.usage
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": call.operation,
        "gen_ai.request.model": call.model,
        "gen_ai.usage.input_tokens": u.prompt_tokens,
        "gen_ai.usage.output_tokens": u.completion_tokens,
        "thinktank.backend": call.backend,
        "thinktank.call.status": call.status,
        "thinktank.cache_hit": call.status == "cached",
        "thinktank.sample_indices": list(call.sample_indices),
    }
    if call.temperature is not None:
        attributes["gen_ai.request.temperature"] = call.temperature
    if call.max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = call.max_tokens
    if call.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = list(call.finish_reasons)
    if u.cached_prompt_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = u.cached_prompt_tokens
    if call.status == "cached":
        attributes["thinktank.saved_tokens"] = u.saved_tokens
    if u.cost_usd:
        attributes["thinktank.cost_usd"] = u.cost_usd
    if call.status == "error":
        attributes["error.type"] = (call.error or "error").split(":", 1)[0]
    span = tracer.start_span(f"{call.operation} {call.model}", context=parent, kind=SpanKind.CLIENT, attributes=attributes,
                             start_time=clock.ns(call.started_s))  # fmt: skip
    if call.status == "error":
        span.set_status(Status(StatusCode.ERROR, call.error or "error"))
    span.end(end_time=clock.ns(_call_end(call)))


def _call_end(call: CallRecord) -> float:
    return call.ended_s if call.ended_s is not None else call.started_s + call.latency_s


def _node_end(node: TraceNode) -> float:
    """A node's recorded end, else (a sub-step nobody closed) the end of the last thing in it."""
    if node.ended_s is not None:
        return node.ended_s
    ends = [node.started_s, *(_call_end(c) for c in node.calls), *(_node_end(c) for c in node.children)]
    return max(ends)


class _Clock:
    """Maps the trace's monotonic seconds (relative to the query's start) to epoch nanoseconds, as spans need."""

    def __init__(self, origin: float) -> None:
        self.origin_ns = time.time_ns() - time.monotonic_ns() + int(origin * 1e9)

    def ns(self, since_origin_s: float) -> int:
        return self.origin_ns + int(since_origin_s * 1e9)


class _WarnOnce(SpanExporter):
    """Wraps the OTLP exporter: a failing endpoint is reported once (not per batch) and not retried for a while."""

    def __init__(self, inner: SpanExporter, endpoint: str) -> None:
        self.inner, self.endpoint = inner, endpoint
        self.warned = False
        self.down_until = 0.0
        self._lock = threading.Lock()
        self._filter = _Capture()
        logging.getLogger(_SDK_LOGGER).addFilter(self._filter)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if time.monotonic() < self.down_until:
            return SpanExportResult.FAILURE
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # the processor would log it per batch
            self._filter.reason = self._filter.reason or f"{type(exc).__name__}: {exc}"
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.FAILURE:
            self.down_until = time.monotonic() + RETRY_AFTER_S
            with self._lock:
                first, self.warned = not self.warned, True
            if first:
                logger.warning(
                    "OpenTelemetry: the OTLP endpoint %s did not take %d span(s) (%s); traces are dropped while it is"
                    " down (queries are not affected)", self.endpoint or "(exporter)", len(spans),
                    self._filter.reason or "export failed",
                )  # fmt: skip
        else:
            self.down_until = 0.0
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def release(self) -> None:
        logging.getLogger(_SDK_LOGGER).removeFilter(self._filter)


class _Capture(logging.Filter):
    """Keeps the OTLP exporter's first failure message (for our one warning) and drops its per-batch log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.reason = self.reason or record.getMessage()[:300]
            return False
        return True
