"""Shared fixtures. `fake_server`: a scriptable OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_openai_server import FakeOpenAIServer


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    """A fresh server per test (native `n`, instant replies); script it with `fake_server.script(...)`."""
    with FakeOpenAIServer() as server:
        yield server
