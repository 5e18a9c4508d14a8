"""Find host processes that run under a sandbox uid range: proof that nothing outlived a run."""

from __future__ import annotations

import os
from pathlib import Path


def pids_with_uid_in(uid_base: int, span: int = 1 << 24) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if uid_base <= uid < uid_base + span:
            found.append(pid)
    return found
