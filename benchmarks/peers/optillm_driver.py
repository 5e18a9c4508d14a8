"""optillm as its users run it: its proxy in front of thinktank's llama-server, one approach per run.

Runs in optillm's own venv (see `_driver_io.py` for the protocol). The driver starts `optillm --base-url <llama>`
on a free loopback port, waits for its /health, and sends each problem's prompt as one chat request with
`extra_body={"optillm_approach": <approach>}`; the reply's content is the answer. optillm chooses its own
sampling settings inside an approach (they are recorded in the header): `--temperature` is sent only with `none`
(as 0: the greedy pass-through), `max_tokens` with every request. The proxy is stopped when the driver ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _driver_io import common_args, refuse, serve

APPROACHES = ("none", "bon", "moa", "self_consistency", "plansearch")
#: what optillm 0.4.0 does inside each approach (read from its source: bon.py, moa.py, self_consistency.py,
#: plansearch.py, server.py's defaults), so a row says what was run
OWN_SETTINGS = {
    "none": "pass-through: the request as sent (temperature 0 here)",
    "bon": "n=3 (--best-of-n default) samples at temperature 1 in one n-call, then one 0-10 rating call per sample at"
    " temperature 0.1",
    "moa": "3 candidates at temperature 1, a critique and a final answer at temperature 0.1",
    "self_consistency": "5 samples at temperature 1, one after another; clusters whole texts (difflib ratio 0.8)",
    "plansearch": "observations -> plans -> code (n=1), no temperature set (the server's default)",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the proxy's child before exec: the kernel stops the proxy if this driver dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_proxy(base_url: str, port: int, log: Path, timeout_s: float = 300.0) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("optillm")
    env = {**os.environ, "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY", "none")}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(exe), "--base-url", base_url, "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent,
        )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the optillm proxy exited with code {proc.returncode} during start-up; log: {log}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            if r.status == 200:
                return proc
        time.sleep(0.2)  # polling a child's readiness against a deadline, not pacing calls
    proc.terminate()
    raise RuntimeError(f"the optillm proxy was not healthy after {timeout_s:.0f}s; log: {log}")


def main() -> None:
    parser = common_args(__doc__ or "")
    parser.add_argument("--proxy-log", default="optillm-proxy.log")
    args = parser.parse_args()
    if args.approach not in APPROACHES:
        refuse("optillm", f"unknown optillm approach {args.approach!r}; known: {', '.join(APPROACHES)}")
    try:
        from openai import OpenAI

        optillm_version = version("optillm")
    except Exception as exc:  # any import or metadata failure means "not installed"
        refuse("optillm", f"optillm is not installed in {sys.prefix}: {exc}")
    port = free_port()
    try:
        proxy = start_proxy(args.base_url, port, Path(args.proxy_log))
    except RuntimeError as exc:
        refuse("optillm", str(exc))
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", timeout=3600, max_retries=0)
    settings = {"own": OWN_SETTINGS[args.approach], "max_tokens": args.max_tokens, "proxy": f"127.0.0.1:{port}"}

    def solve(task: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        response = client.chat.completions.create(
            model=args.model, messages=[{"role": "user", "content": task["prompt"]}], max_tokens=args.max_tokens,
            extra_body={"optillm_approach": args.approach},
            **({"temperature": 0.0} if args.approach == "none" else {}),
        )  # fmt: skip
        usage = response.usage
        reported = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens} if usage else {}
        return response.choices[0].message.content or "", reported

    try:
        serve("optillm", optillm_version, args.approach, settings, solve, args.concurrency)
    finally:
        proxy.terminate()
        try:
            proxy.wait(10)
        except subprocess.TimeoutExpired:
            proxy.kill()


if __name__ == "__main__":
    main()
