"""Find host processes that belong to sandboxed runs: proof that nothing outlived a run.

Root mode: every run has a uid from this process's block of the sandbox's range (see `PythonSandbox._slot`; other
processes' sandboxes, e.g. a concurrent test run, use other blocks). Rootless mode: runs keep our own uid, but
live in a PID namespace below ours (a longer NSpid line than our own).
"""

from __future__ import annotations

import os
from pathlib import Path


def _fields(pid: str | int) -> tuple[int, int]:
    """(real uid, PID-namespace depth) of a process."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = int(next(line for line in status if line.startswith("Uid:")).split()[1])
    depth = len(next((line for line in status if line.startswith("NSpid:")), "NSpid: 0").split()) - 1
    return uid, depth


def own_uids(uid_base: int) -> range:
    """The block of run uids `PythonSandbox(uid_base=...)` hands out in this process (they also name its cgroups)."""
    first = uid_base + (os.getpid() % 65536) * 256
    return range(first, first + 256)


def pids_with_uid_in(uid_base: int, span: int = 0) -> list[str]:
    """Root-mode runs of this process (uids from `uid_base`, or the `span` uids from it), and, when we are not
    root, our own processes in deeper PID namespaces."""
    if not span:
        uids = own_uids(uid_base)
        uid_base, span = uids.start, len(uids)
    me, my_depth = os.getuid(), _fields("self")[1]
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uid, depth = _fields(pid)
        except (OSError, StopIteration, ValueError):
            continue
        if uid_base <= uid < uid_base + span or (me != 0 and uid == me and depth > my_depth):
            found.append(pid)
    return found
