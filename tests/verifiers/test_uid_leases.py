"""Sandbox uids are unique across processes: a lease held anywhere is honoured, and dies with its holder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from thinktank.exceptions import VerificationError
from thinktank.verifiers._uid_leases import UidLeases

BASE = 1_800_000_000


def lease_in_child(directory: Path, *, hold: bool = False, pid: int | None = None) -> subprocess.Popen[str]:
    """Another process leasing from the same range; it prints its uid, then (with `hold`) keeps it until killed.
    `pid` fakes its os.getpid(): under the old pid-derived ranges, equal pids modulo 65536 meant equal uids."""
    code = f"""
        import os, sys
        {"os.getpid = lambda: " + str(pid) if pid is not None else ""}
        from pathlib import Path
        from thinktank.verifiers._uid_leases import UidLeases
        with UidLeases({BASE}, directory=Path({str(directory)!r})).lease() as uid:
            print(uid, flush=True)
            {"sys.stdin.read()" if hold else ""}
    """
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_a_uid_leased_in_one_process_is_not_handed_out_in_another(tmp_path: Path) -> None:
    leases = UidLeases(BASE, directory=tmp_path / "leases")
    with leases.lease() as mine:
        child = lease_in_child(leases.directory, pid=os.getpid())
        theirs = int(child.communicate(timeout=60)[0])
    assert mine == BASE and theirs == BASE + 1


def test_leases_in_one_process_differ_and_are_reused_once_released(tmp_path: Path) -> None:
    leases = UidLeases(BASE, directory=tmp_path / "leases")
    with leases.lease() as first, leases.lease() as second, UidLeases(BASE, directory=leases.directory).lease() as third:
        assert [first, second, third] == [BASE, BASE + 1, BASE + 2]
    with leases.lease() as again:
        assert again == BASE
    assert len(list(leases.directory.iterdir())) == 3  # one small file per uid ever in flight at once


def test_a_killed_holder_frees_its_uid(tmp_path: Path) -> None:
    leases = UidLeases(BASE, directory=tmp_path / "leases")
    holder = lease_in_child(leases.directory, hold=True)
    assert holder.stdout is not None and int(holder.stdout.readline()) == BASE
    with leases.lease() as while_held:
        assert while_held == BASE + 1
    holder.kill()
    holder.wait(timeout=30)
    with leases.lease() as after:
        assert after == BASE


def test_a_full_range_and_a_foreign_lease_directory_are_clear_errors(tmp_path: Path) -> None:
    leases = UidLeases(BASE, span=2, directory=tmp_path / "leases")
    with leases.lease(), leases.lease(), pytest.raises(VerificationError, match="all 2 sandbox uids"), leases.lease():
        pass
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # anyone could plant or delete lease files here
    with pytest.raises(VerificationError, match="owned and writable only by"), UidLeases(BASE, directory=shared).lease():
        pass
