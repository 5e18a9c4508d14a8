"""`thinktank doctor` against the real engine build (its smoke test re-run) and a real llama-server."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from thinktank.backends.llama_build import good_binary
from thinktank.cli.commands import app

pytestmark = pytest.mark.integration


def test_doctor_re_runs_the_smoke_test_and_reaches_a_real_server(small_server):
    assert good_binary() is not None  # small_server built it if it was not
    result = CliRunner().invoke(app, ["doctor", "--json", "--smoke", "--backend", small_server.base_url])
    rows = {row["name"]: row for row in json.loads(result.stdout)["checks"]}
    assert rows["engine"]["status"] == "ok" and "smoke test re-run now" in rows["engine"]["detail"], rows["engine"]
    assert rows["model smollm2-135m-instruct"]["status"] == "ok"  # pulled (and verified) for the server
    assert rows[f"backend {small_server.base_url}"] == {
        "name": f"backend {small_server.base_url}", "status": "ok",
        "detail": f"{small_server.base_url} answers GET /v1/models", "fix": "",
    }  # fmt: skip
    failed = [row for row in rows.values() if row["status"] == "fail"]
    assert (result.exit_code == 0) == (not failed), result.output
