"""Exporting query traces to observability backends (OpenTelemetry over OTLP/HTTP: the `otel` extra).

Import `thinktank.telemetry.otel` only when an endpoint is configured: it needs the extra.
"""

from __future__ import annotations

__all__: list[str] = []
