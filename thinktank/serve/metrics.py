"""Prometheus metrics for `GET /metrics`, kept by prometheus-client in a registry of the app's own.

Each app has its own `CollectorRegistry` (never the library's global one), so two apps in one process
(tests, or two servers embedded in one program) count apart. Everything runs on the event loop.

    thinktank_requests_total{route="/v1/chat/completions",status="200"} 12.0
    thinktank_request_duration_seconds_bucket{route="/v1/chat/completions",le="0.5"} 9.0
    thinktank_tokens_total{architecture="sample-8-vote",kind="completion"} 5120.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from thinktank.engine.trace import TraceNode

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
#: the text exposition format `generate_latest` writes
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The server's metrics; `observe_run` reads a finished request's trace."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("thinktank_requests", "HTTP requests by route and status code.", ["route", "status"], registry=r)
        self.latency = Histogram(
            "thinktank_request_duration_seconds",
            "HTTP request latency (to the last byte).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "thinktank_tokens", "Tokens spent inside architectures (all internal calls).", ["architecture", "kind"], registry=r
        )
        self.calls = Counter(
            "thinktank_backend_calls",
            "Internal LLM calls by status (ok, cached, error, cancelled).",
            ["architecture", "status"],
            registry=r,
        )
        self.cache_hits = Counter(
            "thinktank_cache_hits", "Samples served from the response cache or single flight.", ["architecture"], registry=r
        )
        self.cost = Counter(
            "thinktank_cost_usd", "Dollars spent inside architectures (by the price table).", ["architecture"], registry=r
        )
        self.backend_errors = Counter(
            "thinktank_backend_errors", "Failed internal LLM calls.", ["architecture", "model"], registry=r
        )
        self.in_flight = Gauge("thinktank_requests_in_flight", "Requests being served now.", registry=r)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def observe_run(self, architecture: str, trace: TraceNode) -> None:
        usage = trace.usage
        self.tokens.labels(architecture=architecture, kind="prompt").inc(usage.prompt_tokens)
        self.tokens.labels(architecture=architecture, kind="completion").inc(usage.completion_tokens)
        self.cache_hits.labels(architecture=architecture).inc(usage.cache_hits)
        self.cost.labels(architecture=architecture).inc(usage.cost_usd)
        for node in trace.walk():
            for call in node.calls:
                self.calls.labels(architecture=architecture, status=call.status).inc()
                if call.status == "error":
                    self.backend_errors.labels(architecture=architecture, model=call.model).inc()

    def render(self) -> str:
        return generate_latest(self.registry).decode()
