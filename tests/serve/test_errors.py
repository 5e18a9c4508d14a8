"""Errors -> HTTP status and OpenAI error code; ServeError stays in the one error tree."""

from __future__ import annotations

import pytest

from thinktank.exceptions import BackendTimeout, BackendUnreachable, ContextLengthExceeded, ThinktankError, UnknownModelError
from thinktank.serve.errors import ServeError, as_serve_error


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (BackendUnreachable("down"), 503, "backend_unavailable"),
        (BackendTimeout("slow"), 503, "backend_unavailable"),
        (ContextLengthExceeded("too long", 400), 400, "context_length_exceeded"),
        (TimeoutError(), 504, "timeout"),
        (UnknownModelError("x", ["y"]), 500, "internal_error"),
        (RuntimeError("secret detail"), 500, "internal_error"),
    ],
)
def test_errors_map_to_statuses(exc, status, code):
    error = as_serve_error(exc)
    assert (error.status_code, error.code) == (status, code)
    assert "secret detail" not in str(error)  # unexpected errors do not leak their text


def test_serve_error_is_in_the_one_tree():
    error = ServeError("queue full", 429, type="rate_limit_error", code="queue_full", retry_after=2)
    assert isinstance(error, ThinktankError) and as_serve_error(error) is error
