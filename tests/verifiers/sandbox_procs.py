"""Find host processes that belong to sandboxed runs: proof that nothing outlived a run.

Root mode: every run has a uid leased from the sandbox's range (see `_uid_leases.py`); the test modules derive
their `uid_base` from the pid (`per_process_uid_base`), so a concurrent test run's runs are not counted as ours. Rootless mode: runs keep our own uid, but
live in a PID namespace below ours (a longer NSpid line than our own).
"""

from __future__ import annotations

import os
from pathlib import Path

from thinktank.verifiers._uid_leases import DEFAULT_SPAN


def _fields(pid: str | int) -> tuple[int, int]:
    """(real uid, PID-namespace depth) of a process."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = int(next(line for line in status if line.startswith("Uid:")).split()[1])
    depth = len(next((line for line in status if line.startswith("NSpid:")), "NSpid: 0").split()) - 1
    return uid, depth


def per_process_uid_base(first: int) -> int:
    """A `uid_base` from `first` that concurrent test processes rarely share (leases keep runs apart if they do)."""
    return first + (os.getpid() % 4096) * DEFAULT_SPAN


def own_uids(uid_base: int) -> range:
    """The run uids `PythonSandbox(uid_base=...)` hands out (they also name its cgroups)."""
    return range(uid_base, uid_base + DEFAULT_SPAN)


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
