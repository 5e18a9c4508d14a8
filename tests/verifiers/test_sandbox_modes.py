"""Which sandbox mode and which memory cap a host gets: the user-namespace probe and the cgroup choice.

The cgroup-v2 path runs on a fake cgroup tree (a tmp dir): the machines this was written on have cgroup v1
memory controllers and a controller-less cgroup2 mount, so no real v2 memory cgroup is available to test on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from thinktank.exceptions import VerificationError
from thinktank.verifiers import _sandbox_process as sp
from thinktank.verifiers import python_sandbox
from thinktank.verifiers._sandbox_process import CgroupParent, MemoryCgroup, v1_memory_parent, v2_memory_parent
from thinktank.verifiers.python_sandbox import PythonSandbox


def unprivileged(monkeypatch, probe: str, sysctls: dict[str, str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1001)
    monkeypatch.setattr(python_sandbox, "userns_probe", lambda unshare: probe)
    monkeypatch.setattr(python_sandbox, "_sysctl", lambda name: sysctls.get(name))


@pytest.mark.parametrize(
    ("sysctls", "fix"),
    [
        ({"user/max_user_namespaces": "0"}, "`sudo sysctl -w user.max_user_namespaces=15000`"),
        (
            {"kernel/apparmor_restrict_unprivileged_userns": "1", "user/max_user_namespaces": "63000"},
            "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`",
        ),
        ({"kernel/unprivileged_userns_clone": "0"}, "`sudo sysctl -w kernel.unprivileged_userns_clone=1`"),
    ],
)
def test_without_root_or_user_namespaces_the_error_names_the_sysctl(monkeypatch, sysctls, fix):
    unprivileged(monkeypatch, "unshare: unshare failed: Operation not permitted", sysctls)
    with pytest.raises(VerificationError) as error:
        PythonSandbox()
    message = str(error.value)
    assert message.startswith("the Python sandbox needs root or unprivileged user namespaces")
    assert "unshare --user --map-current-user --keep-caps --net --pid" in message
    assert "(unshare: unshare failed: Operation not permitted)" in message
    assert f"Fix: {fix} (persist it in /etc/sysctl.d/), or run as root" in message
    assert "never run without the sandbox" in message


def test_an_unknown_cause_lists_every_switch(monkeypatch):
    unprivileged(monkeypatch, "unshare: write failed /proc/self/uid_map: Operation not permitted", {})
    with pytest.raises(VerificationError, match="whichever this kernel has") as error:
        PythonSandbox()
    for switch in ("apparmor_restrict_unprivileged_userns=0", "max_user_namespaces=15000", "unprivileged_userns_clone=1"):
        assert switch in str(error.value)


def test_with_user_namespaces_an_ordinary_user_gets_rootless_mode(monkeypatch):
    unprivileged(monkeypatch, "", {})
    monkeypatch.setenv("HOME", "/home/someone")
    sandbox = PythonSandbox(hide=["/srv/project"])
    assert sandbox.mode == "rootless"
    assert sandbox.hide[0] == "/run" and "/home/someone" in sandbox.hide and sandbox.hide[-1] == "/srv/project"


def test_root_is_never_probed(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(python_sandbox, "userns_probe", lambda unshare: pytest.fail("probed as root"))
    assert PythonSandbox().mode == "root"
    assert PythonSandbox().hide == ["/run"]  # root mode does not hide $HOME: the runs' uids cannot enter it


def test_the_real_probe_runs_once_and_agrees_with_this_host():
    python_sandbox.userns_probe.cache_clear()
    first = python_sandbox.userns_probe("unshare")
    assert python_sandbox.userns_probe("unshare") == first and python_sandbox.userns_probe.cache_info().hits == 1
    if os.geteuid() != 0:  # as root the probe maps root to itself, which says nothing about ordinary users
        assert first == ""  # these tests are running rootless, so it worked


def fake_cgroup(root: Path, controllers: str = "", subtree: str = "", procs: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text(subtree + "\n")
    if procs:
        (root / "cgroup.procs").write_text("")
    return root


def test_v2_uses_the_nearest_delegated_cgroup_that_enables_memory(tmp_path):
    top = fake_cgroup(tmp_path, "cpu memory pids", "cpu memory pids")
    slice_ = fake_cgroup(top / "user.slice", "cpu memory pids", "memory pids")
    own = fake_cgroup(slice_ / "session.scope", "memory pids", "")
    proc_cgroup = "0::/user.slice/session.scope\n"
    assert v2_memory_parent(proc_cgroup, tmp_path) == CgroupParent(slice_, 2)  # ours holds processes: its parent
    (own / "cgroup.subtree_control").write_text("memory\n")  # a delegated cgroup whose children get memory
    assert v2_memory_parent(proc_cgroup, tmp_path) == CgroupParent(own, 2)


def test_v2_is_not_used_without_the_memory_controller_or_write_access(tmp_path):
    top = fake_cgroup(tmp_path, "cpu pids", "cpu pids")  # like this host's /sys/fs/cgroup/unified: no memory
    fake_cgroup(top / "a", "cpu pids", "")
    assert v2_memory_parent("0::/a\n", tmp_path) is None
    other = tmp_path / "other"
    fake_cgroup(other, "memory", "memory", procs=False)  # no cgroup.procs we could write: not delegated to us
    fake_cgroup(other / "b", "memory", "")
    assert v2_memory_parent("0::/b\n", other) is None
    assert v2_memory_parent("1:memory:/x\n", tmp_path) is None  # no unified hierarchy line at all
    assert v2_memory_parent("0::/elsewhere\n", tmp_path, mount_root="/mounted") is None  # outside the mount


def test_v2_enables_memory_at_the_root_of_the_hierarchy(tmp_path):
    fake_cgroup(tmp_path, "cpu memory", "cpu")  # the root cgroup may hold processes and enable controllers
    assert v2_memory_parent("0::/\n", tmp_path) == CgroupParent(tmp_path, 2)
    assert "+memory" in (tmp_path / "cgroup.subtree_control").read_text()


def test_v1_is_preferred_where_it_works_as_before(tmp_path, monkeypatch):
    v1 = fake_cgroup(tmp_path / "memory" / "jobs" / "me")
    proc_cgroup = "4:memory:/jobs/me\n0::/\n"
    assert v1_memory_parent(proc_cgroup, tmp_path / "memory") == CgroupParent(v1, 1)
    (v1 / "cgroup.procs").unlink()
    assert v1_memory_parent(proc_cgroup, tmp_path / "memory") is None
    v2 = fake_cgroup(tmp_path / "unified", "memory", "memory")
    fake_cgroup(v2 / "me", "memory", "")
    files = {"/proc/self/cgroup": proc_cgroup.replace("0::/", "0::/me"),
             "/proc/self/mountinfo": f"30 1 0:26 / {v2} rw,relatime shared:9 - cgroup2 cgroup2 rw\n"}  # fmt: skip
    original = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: files.get(str(self)) or original(self, *a, **k))
    assert sp.memory_cgroup_root() == CgroupParent(v2, 2)  # v1 not writable: v2 next


def test_a_v2_run_cgroup_caps_memory_and_swap_and_counts_oom_kills(tmp_path):
    parent = CgroupParent(fake_cgroup(tmp_path, "memory", "memory"), 2)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "memory.swap.max").write_text("max\n")  # what the kernel creates with the directory
    cgroup = MemoryCgroup(parent, "run", 300 << 20)
    assert cgroup.kind == "cgroup-v2" and (tmp_path / "run" / "memory.max").read_text() == str(300 << 20)
    assert (tmp_path / "run" / "memory.swap.max").read_text() == "0"
    assert cgroup.oom_kills() == 0
    (tmp_path / "run" / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n")
    assert cgroup.oom_kills() == 2
    for name in ("memory.max", "memory.swap.max", "memory.events"):
        (tmp_path / "run" / name).unlink()  # cgroupfs has no files to delete: rmdir alone removes a cgroup
    cgroup.remove()
    assert not (tmp_path / "run").exists()


def test_a_run_cgroup_still_busy_is_removed_before_the_next_run(tmp_path):
    parent = CgroupParent(fake_cgroup(tmp_path, "memory", "memory"), 2)
    busy = MemoryCgroup(parent, "busy", 1 << 20)
    busy.remove()  # a file still in it stands for the dying processes of a cancelled run
    assert busy.path.exists() and busy.path in sp._BUSY_CGROUPS
    (busy.path / "memory.max").unlink()
    other = MemoryCgroup(parent, "next", 1 << 20)
    assert not busy.path.exists() and busy.path not in sp._BUSY_CGROUPS
    (other.path / "memory.max").unlink()
    other.remove()
