"""Exporting query traces to observability backends: OpenTelemetry over OTLP/HTTP (the `otel` extra).

    with exporting(otlp_url) as sink:       # None when neither --otlp nor $OTEL_EXPORTER_OTLP_ENDPOINT is set
        ...                                 # after each query: if sink: sink.export(ctx.node, attributes=...)

Code that runs queries types against `TraceSink`, so it imports without the extra.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from thinktank.engine.trace import TraceNode
from thinktank.exceptions import ConfigError
from thinktank.telemetry.endpoint import resolve_endpoint

__all__ = ["TraceSink", "exporting", "resolve_endpoint"]


class TraceSink(Protocol):
    def export(
        self, trace: TraceNode, *, attributes: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Send a finished query's trace; never raises (a trace must not fail its query)."""


@contextmanager
def exporting(url: str | None, *, service_name: str = "thinktank", timeout_s: float = 5.0) -> Iterator[TraceSink | None]:
    """An OTLP exporter for one command (its own TracerProvider), flushed on exit; None when export is off."""
    if resolve_endpoint(url) is None:
        yield None
        return
    try:
        from thinktank.telemetry.otel import open_exporter
    except ImportError as exc:
        raise ConfigError(str(exc)) from exc
    exporter = open_exporter(url, service_name=service_name, timeout_s=timeout_s)
    try:
        yield exporter
    finally:
        if exporter is not None:
            exporter.shutdown()
