"""llama-server's /metrics, read with prometheus-client's parser: every sample, labelled ones too."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from thinktank.backends import llama_server
from thinktank.backends.llama_server import parse_metrics, server_metrics
from thinktank.exceptions import BackendError, BackendStatusError

METRICS = """\
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 34
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
llamacpp:n_decode_total{slot="1",kind="a \\"b\\""} 5
llamacpp:kv_cache_usage_ratio 0.5e-1
"""


def serve(monkeypatch: pytest.MonkeyPatch, status: int, text: str) -> list[str]:
    """Answer `httpx.get` with one canned response; returns the URLs asked for."""
    asked: list[str] = []

    def get(url: str, **kwargs: Any) -> httpx.Response:
        asked.append(url)
        return httpx.Response(status, text=text)

    monkeypatch.setattr(llama_server.httpx, "get", get)
    return asked


def test_labelled_samples_are_kept_beside_plain_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = serve(monkeypatch, 200, METRICS)
    metrics = server_metrics("http://127.0.0.1:8080/v1")
    assert asked == ["http://127.0.0.1:8080/metrics"]
    assert metrics == {
        "llamacpp:tokens_predicted_total": 34.0,
        "llamacpp:requests_processing": 2.0,
        'llamacpp:n_decode_total{kind="a \\"b\\"",slot="1"}': 5.0,
        "llamacpp:kv_cache_usage_ratio": 0.05,
    }


def test_an_error_answer_is_a_status_error(monkeypatch: pytest.MonkeyPatch) -> None:
    serve(monkeypatch, 501, '{"error": {"message": "This server does not support metrics endpoint."}}')
    with pytest.raises(BackendStatusError, match="HTTP 501: This server does not support metrics"):
        server_metrics("http://127.0.0.1:8080/v1")


def test_text_that_is_not_prometheus_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="not Prometheus text"):
        parse_metrics('llamacpp:x{slot="1" 5\n')
