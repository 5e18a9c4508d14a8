"""The foundation against the real llama-server and a real model (SmolLM2-135M)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thinktank.backends.llama_server import LlamaServer, free_port
from thinktank.engine import Budget, Engine, ResponseCache
from thinktank.exceptions import BackendStartError, BackendUnreachable, BudgetExceeded, ModelPackError
from thinktank.models.packs import PACKS
from thinktank.types import GenerationRequest

from .conftest import SMALL_MODEL, server_metrics

pytestmark = pytest.mark.integration


def llama_server_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "llama-server"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


async def test_generate_n_samples_with_exact_usage(small_server):
    before = server_metrics(small_server)
    async with small_server.backend() as backend:
        engine = Engine({small_server.model: backend})
        ctx = engine.context()
        request = GenerationRequest.from_prompt(
            "Name a colour in one word.", small_server.model, n=3, temperature=0.9, max_tokens=24, seed=7
        )  # three replies of different lengths (11, 9 and 6 tokens when written)
        out = await ctx.generate(request)
        after = server_metrics(small_server)
        # the three seeded samples share one call (the prompt is evaluated once) ...
        assert len(out) == 3 and all(c.text for c in out) and ctx.usage.calls == 1
        # ... and are exactly the samples of three separate calls seeded 7, 8, 9
        separate = [(await backend.generate(request.with_(n=1, seed=7 + i))).choices[0] for i in range(3)]
    assert [c.text for c in out] == [s.text for s in separate]
    # each sample is charged its own tokens (n=1 usage is exact), not a share of the call's
    assert [c.usage.completion_tokens for c in out] == [s.completion_tokens for s in separate]
    # our per-sample accounting matches the server's own counters exactly
    predicted = after["llamacpp:tokens_predicted_total"] - before["llamacpp:tokens_predicted_total"]
    assert ctx.usage.completion_tokens == predicted
    assert 3 <= ctx.usage.completion_tokens <= 72
    prompt = after["llamacpp:prompt_tokens_total"] - before["llamacpp:prompt_tokens_total"]  # evaluated, not cached
    assert ctx.usage.prompt_tokens - ctx.usage.cached_prompt_tokens == prompt and ctx.usage.prompt_tokens > 0


async def test_samples_run_in_parallel_slots(small_server):
    async with small_server.backend() as backend:
        engine = Engine({small_server.model: backend})
        ctx = engine.context()
        await asyncio.gather(*(
            ctx.generate(GenerationRequest.from_prompt(f"Count from {i} to 50.", small_server.model, max_tokens=40))
            for i in range(4)
        ))  # fmt: skip
    calls = ctx.node.calls
    assert len(calls) == 4
    # all four calls started before the first one finished: they overlapped on the server's slots
    first_end = min(c.started_s + c.latency_s for c in calls)
    assert all(c.started_s < first_end for c in calls)


@pytest.mark.parametrize("shared_call", [True, False])
async def test_cancellation_frees_server_slots(small_server, shared_call):
    """Cancel mid-generation while /metrics is polled: the server stops (the 2 s target: benchmarks/bench_cancellation.py).

    Cancelling while /metrics is polled used to fail every time for one call per sample: each /metrics answer
    restarted the server's 1 s wait for results, so the closed connection was never checked. The build
    patches llama-server to wait on a deadline (llama_build.SOURCE_PATCHES).
    """
    options = {} if shared_call else {"supports_native_n": False, "seeded_native_n": False}
    async with small_server.backend(**options) as backend:
        engine = Engine({small_server.model: backend})
        ctx = engine.context()
        request = GenerationRequest.from_prompt(
            "Write a very long story about a dragon.", small_server.model, n=2, temperature=0.8, max_tokens=3000
        )
        task = asyncio.create_task(ctx.generate(request))
        # wait (polling /metrics all along) until both samples are generating: a fixed 1.5 s sometimes caught the
        # second slot still starting on a loaded machine
        deadline = time.monotonic() + 60
        while server_metrics(small_server)["llamacpp:requests_processing"] < 2:
            assert time.monotonic() < deadline and not task.done(), "the two samples never generated at once"
            await asyncio.sleep(0.1)
        assert server_metrics(small_server)["llamacpp:requests_processing"] == 2  # both samples are generating
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [c.status for c in ctx.node.calls] == ["cancelled"] * (1 if shared_call else 2)
    # the server notices the closed connections and stops generating, even while it is polled
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if server_metrics(small_server).get("llamacpp:requests_processing", 1) == 0:
            break
        await asyncio.sleep(0.2)
    assert server_metrics(small_server)["llamacpp:requests_processing"] == 0
    predicted = server_metrics(small_server)["llamacpp:tokens_predicted_total"]
    await asyncio.sleep(1.0)
    assert server_metrics(small_server)["llamacpp:tokens_predicted_total"] == predicted


async def test_budget_exhausted_reports_spent(small_server):
    async with small_server.backend() as backend:
        engine = Engine({small_server.model: backend})
        ctx = engine.context(Budget(max_tokens=120))
        request = GenerationRequest.from_prompt("Tell me about cats.", small_server.model, temperature=0.7, max_tokens=64)
        with pytest.raises(BudgetExceeded) as info:
            for seed in range(20):
                await ctx.generate(request.with_(seed=seed))
    assert info.value.spent.total_tokens >= 120
    assert info.value.spent.calls >= 2
    # max_tokens was clamped to what remained: the overshoot is at most one prompt
    assert info.value.spent.completion_tokens <= 120


async def test_cache_hit_spends_nothing_on_the_server(small_server, tmp_path):
    request = GenerationRequest.from_prompt("Say hello.", small_server.model, n=2, temperature=0.5, max_tokens=10, seed=3)
    async with small_server.backend() as backend:
        engine = Engine({small_server.model: backend}, cache=ResponseCache(tmp_path / "cache.sqlite"))
        first = await engine.context().generate(request)
        before = server_metrics(small_server)
        ctx = engine.context()
        second = await ctx.generate(request)
    after = server_metrics(small_server)
    assert [c.text for c in second] == [c.text for c in first]
    assert all(c.cached for c in second)
    assert ctx.usage.calls == 0 and ctx.usage.cache_hits == 2
    assert ctx.usage.saved_tokens == sum(c.usage.total_tokens for c in first)
    assert after["llamacpp:tokens_predicted_total"] == before["llamacpp:tokens_predicted_total"]


async def test_stop_leaves_no_process():
    server = LlamaServer(SMALL_MODEL, slots=1, ctx_per_slot=512)
    async with server:
        pid = server.process.pid
        assert pid in llama_server_pids()
    assert pid not in llama_server_pids()


def test_server_dies_with_a_killed_parent(tmp_path):
    """SIGKILL of the owning process cannot run cleanup code; the kernel still stops the server."""
    pid_file = tmp_path / "pid"
    script = (
        "import asyncio, sys, time\n"
        "from thinktank.backends.llama_server import LlamaServer\n"
        f"s = LlamaServer({SMALL_MODEL!r}, slots=1, ctx_per_slot=512)\n"
        "asyncio.run(s.start())\n"
        f"open({str(pid_file)!r}, 'w').write(str(s.process.pid))\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.2)
    server_pid = int(pid_file.read_text())
    assert server_pid in llama_server_pids()
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 15
    while server_pid in llama_server_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server_pid not in llama_server_pids()


def test_ctrl_c_during_ask_leaves_no_server():
    before = llama_server_pids()
    proc = subprocess.Popen(
        [sys.executable, "-m", "thinktank.cli", "ask", "Count from 1 to 3000, one number per line, in words.",
         "-m", SMALL_MODEL, "--max-tokens", "3000", "--no-cache"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (llama_server_pids() - before):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    log = LlamaServer(SMALL_MODEL).log_path
    while "launch_slot_" not in (log.read_text(errors="replace") if log.exists() else ""):  # generation has begun
        assert time.monotonic() < deadline + 60 and proc.poll() is None
        time.sleep(0.05)
    assert proc.poll() is None, "the answer finished before Ctrl-C: the test needs a longer generation"
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=90)  # generous: CI machines are busy
    finally:
        proc.kill()
    assert proc.returncode == 130, proc.stderr.read() if proc.stderr else ""
    time.sleep(0.5)
    assert not (llama_server_pids() - before)


def test_ctrl_c_during_model_load_exits_130_and_leaves_no_server():
    """SIGINT as soon as the server process exists, i.e. while it loads the 0.5B model (not yet healthy)."""
    from thinktank.backends.llama_server import LlamaServer as Server

    log = Server("qwen2.5-coder-0.5b-instruct").log_path
    before = llama_server_pids()
    proc = subprocess.Popen(
        [sys.executable, "-m", "thinktank.cli", "ask", "hi", "-m", "qwen2.5-coder-0.5b-instruct", "--no-cache"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (llama_server_pids() - before):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    loaded_at_sigint = "listening on" in log.read_text(errors="replace") if log.exists() else False
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, proc.stderr.read() if proc.stderr else ""
    assert not loaded_at_sigint, "the model finished loading before SIGINT: the test did not hit the load"
    deadline = time.monotonic() + 5
    while llama_server_pids() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (llama_server_pids() - before)


async def test_port_in_use_is_a_clear_error(small_server):
    server = LlamaServer(SMALL_MODEL, port=small_server.port)
    with pytest.raises(BackendStartError, match=f"port {small_server.port} .* in use"):
        await server.start()


async def test_truncated_model_file_fails_fast_and_leaves_nothing(tmp_path):
    source = PACKS[SMALL_MODEL].path
    broken = tmp_path / "broken.gguf"
    with open(source, "rb") as f:
        broken.write_bytes(f.read(1_000_000))  # valid magic, truncated body
    before = llama_server_pids()
    with pytest.raises(BackendStartError, match="server log"):
        await LlamaServer(str(broken), slots=1).start()
    assert llama_server_pids() == before


async def test_not_a_gguf_is_refused_before_start(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelPackError, match="not a GGUF"):
        await LlamaServer(str(bogus)).start()


async def test_unreachable_backend_names_url_and_remedy():
    from thinktank.backends.openai_compat import OpenAICompatBackend

    url = f"http://127.0.0.1:{free_port()}/v1"
    async with OpenAICompatBackend(url, max_retries=1, backoff_base_s=0.01) as backend:
        with pytest.raises(BackendUnreachable) as info:
            await backend.generate(GenerationRequest.from_prompt("hi", "m"))
    assert url in str(info.value) and "thinktank backend start" in str(info.value)


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "thinktank.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_cli_ask_prints_answer_and_usage(tmp_path):
    result = run_cli(
        "ask", "What is 2+2?", "-m", SMALL_MODEL, "--n", "2", "--temperature", "0.7", "--max-tokens", "16", "--no-cache"
    )
    assert result.returncode == 0, result.stderr
    assert "sample 0" in result.stdout and "sample 1" in result.stdout
    assert "usage: 1 call(s)" in result.stdout  # both samples in one call (n=2)


def test_cli_backend_start_status_stop():
    start = run_cli("backend", "start", "-m", SMALL_MODEL, "--slots", "2")
    assert start.returncode == 0, start.stderr
    try:
        status = run_cli("backend", "status")
        assert SMALL_MODEL in status.stdout
        # `ask` reuses the long-lived server instead of starting its own
        before = llama_server_pids()
        ask = run_cli("ask", "Hi", "-m", SMALL_MODEL, "--n", "2", "--temperature", "0.7", "--max-tokens", "4", "--no-cache")
        assert ask.returncode == 0, ask.stderr
        assert llama_server_pids() == before
        # the server may have other clients: one choice per call, never a call that needs both slots free at once
        assert "usage: 2 call(s)" in ask.stdout
    finally:
        stop = run_cli("backend", "stop", "-m", SMALL_MODEL)  # only ours: a user's long-lived servers keep running
    assert f"stopped {SMALL_MODEL}" in stop.stdout
    assert SMALL_MODEL not in run_cli("backend", "status").stdout


def test_cli_unknown_model_lists_known():
    result = run_cli("ask", "hi", "-m", "gpt-17")
    assert result.returncode == 2
    assert "unknown model 'gpt-17'" in result.stderr and "qwen2.5-coder-0.5b-instruct" in result.stderr


def test_cli_unreachable_backend():
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = run_cli("ask", "hi", "--backend", url, "-m", "x")
    assert result.returncode == 2
    assert url in result.stderr.replace("\n", "") and "thinktank backend start" in result.stderr.replace("\n", " ")


def test_model_pack_is_verified():
    pack = PACKS[SMALL_MODEL]
    assert pack.is_pulled
    assert Path(str(pack.path) + ".verified").read_text() == pack.sha256


async def test_build_is_smoke_tested_then_serves(tmp_path):
    """build -> smoke -> serve on the real binary: the cached build is only used once its smoke test passed."""
    from thinktank.backends import llama_build

    binary = await asyncio.to_thread(llama_build.ensure_llama_server)
    variant = next(v for v in llama_build.build_variants() if v.binary == binary)
    assert variant.is_good and (variant.directory / llama_build.SMOKE_OK).exists()
    # AMX kernels are compiled out of every variant, whatever this CPU offers
    assert "-mno-amx-int8" in " ".join(variant.options) or "-DGGML_NATIVE=OFF" in variant.options
    log = tmp_path / "smoke.log"
    await asyncio.to_thread(llama_build.smoke_test, binary, PACKS[SMALL_MODEL].path, log)
    assert "tokens per second" in log.read_text()  # it decoded
    async with LlamaServer(SMALL_MODEL, slots=1, ctx_per_slot=512) as server, server.backend() as backend:
        out = await backend.generate(GenerationRequest.from_prompt("Say hi.", server.model, max_tokens=4))
    assert out.choices[0].completion_tokens > 0
