"""`thinktank serve` as a process: wiring over a remote backend (the loopback fake server), auth from the env, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fake_openai_server import FakeOpenAIServer, unused_port


def wait_healthy(url: str, process: subprocess.Popen[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early: {process.communicate()[0]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)  # polling a child process's readiness
    raise AssertionError("serve did not become healthy")


@pytest.fixture
def serve_process(fake_server: FakeOpenAIServer, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = unused_port()
    arch = tmp_path / "two.yaml"
    arch.write_text("name: two-samples\nlayers:\n  - generate: {n: 2, temperature: 0.5}\n  - vote: {}\n")
    command = [sys.executable, "-m", "thinktank.cli", "serve", "--backend", fake_server.base_url, "-m", "fake-model",
               "--arch", "single", "--arch", str(arch), "--port", str(port), "--no-cache", "--api-key-env", "TT_TEST_KEY"]  # fmt: skip
    env = os.environ | {"TT_TEST_KEY": "k-123"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_command_serves_the_given_architectures_with_auth(serve_process, fake_server: FakeOpenAIServer):
    url, process = serve_process
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="k-123", max_retries=0)
    assert sorted(m.id for m in client.models.list().data) == ["single", "two-samples"]
    response = client.chat.completions.create(model="two-samples", messages=[{"role": "user", "content": "hello there"}])
    assert response.choices[0].message.content.startswith("answer")
    assert len(fake_server.chat_requests) == 2 and all(r.body["model"] == "fake-model" for r in fake_server.chat_requests)
    assert response.usage.prompt_tokens == 2 * 2  # the fake counts words; two internal calls
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal after a clean shutdown
    assert "Application shutdown complete" in output
    assert "serving single, two-samples" in output and "API key required" in output
