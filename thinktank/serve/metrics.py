"""Prometheus metrics for `GET /metrics`, in the text exposition format, written by hand.

Counters and one latency histogram are all the server needs; the format is a few lines
of text, so a dependency (prometheus-client, its global registry and multiprocess mode)
would add more than it saves. Everything runs on the event loop: no locks.

    thinktank_requests_total{route="/v1/chat/completions",status="200"} 12
    thinktank_request_duration_seconds_bucket{route="/v1/chat/completions",le="0.5"} 9
    thinktank_tokens_total{architecture="sample-8-vote",kind="completion"} 5120
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict

from thinktank.engine.trace import TraceNode

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] += amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        return lines + [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self.values.items())]


class Histogram:
    def __init__(self, name: str, help: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.buckets = name, help, buckets
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[key] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, counts in sorted(self.counts.items()):
            running = 0
            for bound, count in zip([*self.buckets, math.inf], counts, strict=True):
                running += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(key, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(key)} {_number(self.sums[key])}")
            lines.append(f"{self.name}_count{_labels(key)} {running}")
        return lines


class Metrics:
    """The server's metrics; `observe_run` reads a finished request's trace."""

    def __init__(self) -> None:
        self.requests = Counter("thinktank_requests_total", "HTTP requests by route and status code.")
        self.latency = Histogram("thinktank_request_duration_seconds", "HTTP request latency (to the last byte).")
        self.tokens = Counter("thinktank_tokens_total", "Tokens spent inside architectures (all internal calls).")
        self.calls = Counter("thinktank_backend_calls_total", "Internal LLM calls by status (ok, cached, error, cancelled).")
        self.cache_hits = Counter("thinktank_cache_hits_total", "Samples served from the response cache or single flight.")
        self.cost = Counter("thinktank_cost_usd_total", "Dollars spent inside architectures (by the price table).")
        self.backend_errors = Counter("thinktank_backend_errors_total", "Failed internal LLM calls.")
        self.in_flight = 0

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.inc(route=route, status=str(status))
        self.latency.observe(seconds, route=route)

    def observe_run(self, architecture: str, trace: TraceNode) -> None:
        usage = trace.usage
        self.tokens.inc(usage.prompt_tokens, architecture=architecture, kind="prompt")
        self.tokens.inc(usage.completion_tokens, architecture=architecture, kind="completion")
        self.cache_hits.inc(usage.cache_hits, architecture=architecture)
        self.cost.inc(usage.cost_usd, architecture=architecture)
        for node in trace.walk():
            for call in node.calls:
                self.calls.inc(architecture=architecture, status=call.status)
                if call.status == "error":
                    self.backend_errors.inc(architecture=architecture, model=call.model)

    def render(self) -> str:
        families: list[Counter | Histogram] = [self.requests, self.latency, self.tokens, self.calls]
        families += [self.cache_hits, self.cost, self.backend_errors]
        lines = [line for family in families for line in family.render()]
        lines += [
            "# HELP thinktank_requests_in_flight Requests being served now.",
            "# TYPE thinktank_requests_in_flight gauge",
            f"thinktank_requests_in_flight {self.in_flight}",
        ]
        return "\n".join(lines) + "\n"
