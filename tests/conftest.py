"""Shared fixtures. `fake_server`: a scriptable OpenAI-compatible server on 127.0.0.1; `postgres_server` /
`postgres_url`: a real PostgreSQL server (tests/postgres_server.py) and a fresh database on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from fake_openai_server import FakeOpenAIServer
from postgres_server import PostgresServer
from postgres_server import missing_reason as postgres_missing_reason


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    """A fresh server per test (native `n`, instant replies); script it with `fake_server.script(...)`."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (Debian's package, scripts/ensure_postgres.sh); tests that stop it
    make their own `PostgresServer`. Skipped where PostgreSQL is missing, except under CI, where that fails."""
    reason = postgres_missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database on the session's server, as a postgresql:// URL."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")
