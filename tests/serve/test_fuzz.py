"""Hypothesis fuzzes request bodies and headers against the live server: never a 5xx, errors always OpenAI-shaped.

Bodies are built from the request model's fields with values that are sometimes right, sometimes
out of range and sometimes any JSON at all; raw bytes cover what is not JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import WordStreamBackend, numbered, serving
from .live import LiveServer

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


content = st.text(max_size=40) | st.lists(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "text", "image_url"])}, optional={"text": st.text(max_size=10)}),
    max_size=2,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "user", "system", "assistant", "developer"]), "content": content},
    optional={"name": st.text(max_size=5)},
)
options = st.fixed_dictionaries(
    {},
    optional={
        "budget": st.dictionaries(
            st.sampled_from(["max_tokens", "max_usd", "max_calls", "max_wall_s"]),
            st.integers(1, 60) | st.floats(0.001, 2),
            max_size=3,
        ),
        "kind": st.sampled_from(["text", "math", "code", "sql"]),
    },
)
FIELDS = {
    "max_tokens": st.integers(1, 32768),
    "max_completion_tokens": st.integers(1, 64),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "n": st.integers(1, 16),
    "stop": st.text(min_size=1, max_size=5) | st.lists(st.text(min_size=1, max_size=5), max_size=4),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "thinktank": options,
    "user": st.text(max_size=5),
}
#: bodies the model accepts (most of them answer 200), some with one or two fields replaced by any JSON at all
valid_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["single", "vote-4", "unknown"]), "messages": st.lists(message, min_size=1, max_size=3)},
    optional=FIELDS,
)
corruptions = st.dictionaries(st.sampled_from(["model", "messages", *FIELDS, "extra"]), any_json, min_size=1, max_size=2)
bodies = valid_bodies | st.tuples(valid_bodies, corruptions).map(lambda pair: pair[0] | pair[1])
budget_headers = st.dictionaries(
    st.sampled_from(["X-Thinktank-Budget-Tokens", "X-Thinktank-Budget-Usd"]),
    st.text(alphabet="0123456789.-eE+naif", max_size=8),
    max_size=2,
)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[LiveServer]:
    with serving(WordStreamBackend(numbered)) as live:
        yield live


def check(response: httpx.Response, streamed: bool) -> None:
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert {"message", "type", "param", "code"} <= set(error) and error["message"]
    elif streamed:
        events = [e for e in response.text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]" and not any('"error"' in e[:20] for e in events)
    else:
        body = response.json()
        assert body["object"] == "chat.completion" and body["choices"] and body["usage"]["total_tokens"] >= 0


@FUZZ
@given(body=bodies, headers=budget_headers)
def test_fuzzed_bodies_never_5xx(fuzz_server: LiveServer, body: dict[str, Any], headers: dict[str, str]):
    with fuzz_server.http() as http:
        response = http.post(
            "/v1/chat/completions", content=json.dumps(body).encode(), headers=headers | {"content-type": "application/json"}
        )
    check(response, streamed=body.get("stream") is True)


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzzed_raw_bytes_never_5xx(fuzz_server: LiveServer, raw: bytes):
    with fuzz_server.http() as http:
        response = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400 or (response.status_code < 500 and response.status_code != 200), response.text
    check(response, streamed=False)
