"""`thinktank doctor`: each check's ok / warn / fail and its fix, the JSON shape, the exit status, and a run as an
ordinary uid. Every test gets its own cache dir (THINKTANK_CACHE), so the machine's real builds and packs are
not what these see (the real ones: tests/integration/test_doctor_real.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from thinktank.backends import llama_build
from thinktank.backends import llama_server as llama_server_module
from thinktank.backends.llama_server import ServerState
from thinktank.cli import doctor as doctor_module
from thinktank.cli.commands import app
from thinktank.cli.doctor import Check, _probe, check_backends, check_disk, check_engine, check_packs, check_sandbox
from thinktank.exceptions import ThinktankError
from thinktank.models import packs
from thinktank.models.packs import ModelPack
from thinktank.testing import FakeOpenAIServer
from thinktank.testing.fake_openai_server import unused_port
from thinktank.verifiers import python_sandbox

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def by_name(rows: list[Check]) -> dict[str, Check]:
    return {row.name: row for row in rows}


def test_a_fresh_machine_warns_to_build_and_pull_and_passes(monkeypatch):
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {row["name"]: row for row in report["checks"]}
    assert report["ok"] is True
    assert rows["engine"]["status"] == "warn" and "thinktank backend build" in rows["engine"]["fix"]
    assert rows["model qwen2.5-coder-0.5b-instruct"]["status"] == "warn"  # the default model
    assert rows["model qwen2.5-coder-0.5b-instruct"]["fix"] == "`thinktank models pull qwen2.5-coder-0.5b-instruct`"
    assert rows["model smollm2-135m-instruct"]["status"] == "ok"  # optional, pulled on first use
    mode = "root mode" if os.geteuid() == 0 else "rootless mode"
    assert rows["sandbox"]["status"] == "ok" and rows["sandbox"]["detail"].startswith(mode)
    assert rows["disk"]["status"] == "ok" and str(Path(os.environ["THINKTANK_CACHE"])) in rows["disk"]["detail"]
    assert rows["backends"]["status"] == "ok" and "none configured" in rows["backends"]["detail"]
    assert set(report["checks"][0]) == {"name", "status", "detail", "fix"}


def test_the_table_shows_every_check_with_its_status():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    for text in ("engine", "sandbox", "disk", "backends", "warn", "thinktank models pull"):
        assert text in result.stdout


def test_a_failed_check_exits_2_after_printing_every_row():
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    down = f"http://127.0.0.1:{unused_port()}/v1"
    done = subprocess.run(
        [sys.executable, "-m", "thinktank.cli", "doctor", "--json", "--backend", down, "--timeout", "2"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)  # stdout stays pure JSON; the summary goes to stderr
    assert report["ok"] is False and f"1 check(s) failed: backend {down}" in done.stderr
    assert {row["name"] for row in report["checks"]} >= {"engine", "sandbox", "disk", f"backend {down}"}


def test_an_engine_build_stamped_good_is_ok_and_a_stale_one_is_flagged(fresh_cache):
    native = llama_build.native_variant()
    native.binary.parent.mkdir(parents=True)
    native.binary.write_text("#!/bin/sh\n")
    native.binary.chmod(0o755)
    (native.directory / llama_build.SMOKE_OK).write_text("2026-12-03T08:56:07 smollm2-135m-instruct.gguf\n")
    stale = fresh_cache / "llama-server" / "0.1.0-deadbeef0000-native-00000000"
    stale.mkdir()
    rows = by_name(check_engine())
    assert rows["engine"].status == "ok" and "native build" in rows["engine"].detail and "2026-12-03" in rows["engine"].detail
    assert rows["engine: stale builds"].status == "warn" and str(stale) in rows["engine: stale builds"].fix
    native.binary.chmod(0o644)
    assert by_name(check_engine())["engine"].status == "fail"  # stamped good, but not runnable by this user


def test_every_variant_failed_is_a_failure_that_says_how_to_retry():
    for variant in llama_build.build_variants():
        (variant.directory / llama_build.SMOKE_FAILED).write_text(json.dumps({"error": f"{variant.name} segfaulted"}))
    [row] = check_engine()
    assert row.status == "fail" and "native segfaulted" in row.detail and "portable segfaulted" in row.detail
    assert "thinktank backend build --retry-failed" in row.fix


def test_no_toolchain_and_no_build_is_a_failure(monkeypatch):
    monkeypatch.setattr(doctor_module.shutil, "which", lambda tool: None if tool == "cmake" else "/usr/bin/" + tool)
    [row] = check_engine()
    assert row.status == "fail" and "no cmake" in row.detail and "apt-get install cmake g++" in row.fix


def test_packs_are_ok_only_when_assembled_with_their_digest(monkeypatch):
    content = b"GGUF" + b"\0" * 60
    digest = hashlib.sha256(content).hexdigest()
    pack = ModelPack("tiny", (), digest, len(content), "a test pack")
    monkeypatch.setattr(packs, "PACKS", {"tiny": pack})
    monkeypatch.setattr(packs, "DEFAULT_MODEL", "tiny")
    assert check_packs() == [Check("model tiny", "warn", "the default model is not pulled", "`thinktank models pull tiny`")]
    pack.path.write_bytes(content)
    [unverified] = check_packs()  # right size, but never checked: no marker
    assert unverified.status == "fail" and unverified.fix == "`thinktank models pull tiny --force`"
    pack.path.with_name(pack.path.name + ".verified").write_text(digest)
    assert check_packs()[0].status == "ok"
    pack.path.with_name(pack.path.name + ".verified").write_text("0" * 64)  # verified against another digest
    assert check_packs()[0].status == "fail"
    pack.path.with_name(pack.path.name + ".verified").write_text(digest)
    pack.path.write_bytes(content[:-1])  # truncated after verification
    assert check_packs()[0].status == "fail"


def test_a_user_without_user_namespaces_fails_with_the_sysctl_to_change(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1001)
    monkeypatch.setattr(python_sandbox, "userns_probe", lambda unshare: "unshare: unshare failed: Operation not permitted")
    monkeypatch.setattr(python_sandbox, "_sysctl", lambda name: {"kernel/apparmor_restrict_unprivileged_userns": "1"}.get(name))
    [row] = check_sandbox()
    assert row.status == "fail" and "Operation not permitted" in row.detail
    assert row.fix.startswith("`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`")
    monkeypatch.setattr(python_sandbox, "userns_probe", lambda unshare: "")
    assert check_sandbox()[0] == Check("sandbox", "ok", "rootless mode: unprivileged user namespaces")


def test_no_unshare_is_a_failure(monkeypatch):
    monkeypatch.setattr(python_sandbox.shutil, "which", lambda tool: None)
    [row] = check_sandbox()
    assert row.status == "fail" and "unshare" in row.detail and "util-linux" in row.fix


@pytest.mark.parametrize(("free_gb", "status"), [(0.5, "fail"), (2, "warn"), (10, "ok")])
def test_free_disk_thresholds(monkeypatch, free_gb, status):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(doctor_module.shutil, "disk_usage", lambda path: usage(0, 0, int(free_gb * (1 << 30))))
    [row] = check_disk()
    assert row.status == status and (row.fix == "") == (status == "ok")


def test_an_unwritable_cache_dir_is_a_failed_row_not_a_traceback(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("THINKTANK_CACHE", str(blocker / "cache"))
    rows = by_name(doctor_module.run_checks())
    assert rows["disk"].status == "fail" and "THINKTANK_CACHE" in rows["disk"].fix
    assert rows["sandbox"].status == "ok"  # the other checks still ran


def test_recorded_servers_and_given_urls_are_probed(monkeypatch):
    down_url = f"http://127.0.0.1:{unused_port()}/v1"
    with FakeOpenAIServer() as server:
        state = ServerState("smollm2-135m-instruct", 4242, "127.0.0.1", server.port, 4, "/dev/null")
        monkeypatch.setattr(llama_server_module, "running_servers", lambda: [state])
        rows = doctor_module.run_async(check_backends([server.base_url, down_url], None, 2.0))
    named = by_name(rows)
    assert named["backend smollm2-135m-instruct"] == Check(
        "backend smollm2-135m-instruct", "ok", f"{server.base_url} answers GET /v1/models"
    )
    assert named[f"backend {server.base_url}"].status == "ok"
    down = named[f"backend {down_url}"]
    assert down.status == "fail" and "unreachable" in down.detail


@pytest.mark.parametrize(
    ("routes", "status", "detail"),
    [
        ({"/v1/models": 401}, "warn", "refused us (HTTP 401)"),
        ({"/v1/models": 404, "/health": 200}, "ok", "answers GET /health"),  # llama-server without the OpenAI routes
        ({"/v1/models": 404, "/health": 503}, "fail", "GET /health answered HTTP 503"),
        ({"timeout": 0}, "fail", "did not answer within 1.5s"),
    ],
)
async def test_probe_outcomes(routes, status, detail):
    def handler(request: httpx.Request) -> httpx.Response:
        if "timeout" in routes:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(routes.get(request.url.path, 404), json={"data": []})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), timeout=1.5) as client:
        row = await _probe(client, "backend x", "http://host:8000/v1", "restart it")
    assert row.status == status and detail in row.detail
    assert row.fix == ("" if status == "ok" else "set its API key in --api-key-env" if status == "warn" else "restart it")


async def test_the_api_key_is_sent_to_backends(monkeypatch):
    monkeypatch.setattr(llama_server_module, "running_servers", list)
    with FakeOpenAIServer() as server:
        await check_backends([server.base_url], "sk-test", 2.0)
    assert server.requests[-1].headers.get("authorization") == "Bearer sk-test"


def test_doctor_raises_the_root_error_so_main_maps_it_to_exit_2(monkeypatch):
    monkeypatch.setattr(doctor_module, "run_checks", lambda **kw: [Check("disk", "fail", "full", "free space")])
    result = CliRunner().invoke(app, ["doctor"])
    assert isinstance(result.exception, ThinktankError) and "1 check(s) failed: disk" in str(result.exception)
    assert "free space" in result.stdout


def test_shell_completion_is_offered():
    # typer otherwise detects the shell from our parent processes and ignores "bash": run under `nohup make test`,
    # with no shell among them, it printed "Shell  not supported"; with detection off, the named shell is used
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    shown = subprocess.run(
        [sys.executable, "-m", "thinktank.cli", "--show-completion", "bash"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "complete -o default -F" in shown.stdout and "_completion" in shown.stdout and "COMP_WORDS" in shown.stdout
    helped = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in helped.stdout and "--show-completion" in helped.stdout


def test_doctor_as_an_ordinary_uid(tmp_path):
    """Dropped to a uid with no passwd entry (tests/verifiers/unprivileged.py): the sandbox is rootless, the cache is
    that user's own, and a backend is probed across the uid boundary."""
    from tests.verifiers.unprivileged import run_python, skip_reason

    if reason := skip_reason():
        pytest.skip(reason)
    script = (
        "import os, sys; os.environ['THINKTANK_CACHE'] = os.path.join(os.environ['TMPDIR'], 'cache');"
        " sys.argv = ['thinktank', 'doctor', '--json', '--backend', BASE];"
        " from thinktank.cli.commands import main; main()"
    )
    with FakeOpenAIServer() as server:
        child = run_python(["-c", script.replace("BASE", repr(server.base_url))], timeout=300)
    assert child.returncode == 0, child.output
    report = json.loads(child.output[child.output.index("{") :])
    rows = {row["name"]: row for row in report["checks"]}
    assert rows["sandbox"] == {
        "name": "sandbox", "status": "ok", "detail": "rootless mode: unprivileged user namespaces", "fix": ""
    }  # fmt: skip
    assert rows["engine"]["status"] == "warn"  # that user's cache has no build
    assert rows["disk"]["status"] == "ok" and "/thinktank-unprivileged-" in rows["disk"]["detail"]
    assert rows[f"backend {server.base_url}"]["status"] == "ok"
