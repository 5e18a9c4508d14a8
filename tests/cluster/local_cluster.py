"""A real multi-node Ray cluster on one machine, for the tests: `ray start --head` plus `ray start --address ...` nodes,
each with its own temp dir and CPU count, on loopback, stopped (with every process they started) by `stop()`.

Each node runs `ray start --block` in its own session: SIGTERM makes it stop its Ray processes; whatever is still
in that session after a deadline is killed by pid. `ray stop` is never used (it stops every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 120.0
#: Ray (2.52 on) authenticates every connection with a token: the nodes and the driver (`driver_env`) share this one
TOKEN = secrets.token_hex(16)
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Processes whose session id is `sid` (the `ray start` we made a session leader, and what it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) == sid:  # state ppid pgrp session
                pids.append(int(entry.name))
    return pids


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class Node:
    temp_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        return session_pids(self.process.pid)

    def raylet_pid(self) -> int:
        (pid,) = [p for p in self.pids() if "/raylet " in _cmdline(p) or _cmdline(p).startswith("raylet")]
        return pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT_S)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class LocalCluster:
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, args: list[str], ready: str, env: dict[str, str] | None) -> Node:
        temp_dir = Path(tempfile.mkdtemp(prefix="tt-ray-", dir="/tmp"))  # short: Ray's unix socket paths must fit 107 bytes
        log = temp_dir / "start.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [RAY, "start", *args, "--num-cpus=1", f"--temp-dir={temp_dir}", "--node-ip-address=127.0.0.1",
                 "--disable-usage-stats", "--block"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env or self.env, start_new_session=True,
            )  # fmt: skip
        node = Node(temp_dir, process, log)
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        while ready not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed (exit {process.poll()}):\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        return node

    def start_head(self, env: dict[str, str] | None = None) -> Node:
        return self._start(["--head", f"--port={self.port}", "--include-dashboard=false"], "block forever", env)

    def add_node(self, env: dict[str, str] | None = None) -> Node:
        return self._start([f"--address={self.address}"], "block forever", env)

    def stop(self) -> None:
        for node in reversed(self.nodes):  # workers first, then the head
            node.stop()
        for node in self.nodes:
            shutil.rmtree(node.temp_dir, ignore_errors=True)
        self.nodes.clear()


def driver_env() -> dict[str, str]:
    """What the test process needs to join the clusters these tests start."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "RAY_USAGE_STATS_ENABLED": "0"}


def cluster_env(*python_path: str) -> dict[str, str]:
    """The environment for `ray start`: `python_path`, this checkout and its tests/ (pytest imports this package as
    `cluster`, and workers unpickle test helpers by that name) on the path; the shared token."""
    root = Path(__file__).resolve().parents[2]
    paths = [*python_path, str(root), str(root / "tests"), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), **driver_env())
