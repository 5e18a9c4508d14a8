"""Run part of the test suite as an unprivileged user, so that the sandbox's rootless mode is tested for real.

CI runs as root. Dropping to a uid with no passwd entry (`setpriv`) needs an interpreter and a checkout that
user can read, as a real user's own would be: this helper runs a system Python of the venv's version, with the
checkout and the venv's site-packages bind-mounted read-only into that user's home. The home is a tmpfs on
/home in a private mount namespace (so nothing changes on the host, and the sandbox's home-hiding is exercised
outside /tmp). Where our cgroup-v1 memory cgroup is writable, a child of it is delegated to that user (chown),
as an administrator would, so the memory cgroup path runs too.

    .venv/bin/python -m tests.verifiers.unprivileged [pytest args]   # as root: any pytest run, as the dropped user
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from thinktank.verifiers._sandbox_process import NAMESPACES, ROOTLESS, memory_cgroup_root

PROJECT = Path(__file__).resolve().parents[2]
# no passwd entry needed; one per process, so that concurrent test runs on one host cannot mistake each other's
UID = GID = int(os.environ.get("THINKTANK_UNPRIVILEGED_UID", 1_390_000_000 + os.getpid() % 65536))
HOME = "/home/thinktank-unprivileged"  # on a tmpfs mounted over /home in the child's own mount namespace
SANDBOX_TESTS = ("tests/verifiers/test_hostile_programs.py", "tests/verifiers/test_python_sandbox.py")


def _python() -> str | None:
    """A system interpreter of our version (the venv's own may sit under a directory other users cannot enter)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}", sys.executable):
        if os.path.exists(candidate) and _as_user([candidate, "-c", "pass"]).returncode == 0:
            return candidate
    return None


def _as_user(argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str]:
    drop = ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "--"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/"}
    return subprocess.run([*drop, *argv], capture_output=True, text=True, env=env, cwd="/", check=False, **kwargs)


@functools.cache
def skip_reason() -> str:
    """Why the rootless suite cannot be run as a dropped user here ('' if it can)."""
    if os.geteuid() != 0:
        return "not root: cannot drop to another user (the suite itself runs rootless here)"
    for tool in ("setpriv", "unshare", "mount"):
        if shutil.which(tool) is None:
            raise AssertionError(f"root without util-linux `{tool}`")
    probe = _as_user(["unshare", *ROOTLESS, *NAMESPACES, "true"])
    if probe.returncode != 0:
        return f"unprivileged user namespaces are not available: {probe.stderr.strip()}"
    if not os.path.isdir(Path(HOME).parent):
        return f"no {Path(HOME).parent} to mount the unprivileged user's home on"
    if _python() is None:
        return f"no Python {sys.version_info.major}.{sys.version_info.minor} that an unprivileged user can run"
    return ""


@dataclass
class ChildRun:
    """A pytest run as the dropped user: its exit code, output and per-test outcomes from its JUnit report."""

    returncode: int
    output: str
    files: dict[str, str] = field(default_factory=dict)  # what it left in THINKTANK_TEST_OUT, by name
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # node id -> (outcome, message)

    def module(self, name: str) -> dict[str, tuple[str, str]]:
        return {test: result for test, result in self.outcomes.items() if test.startswith(f"{name}::")}


def _junit(xml: str) -> dict[str, tuple[str, str]]:
    outcomes = {}
    for case in ET.fromstring(xml).iter("testcase"):
        node = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome, message = kind, (element.get("message") or "") + "\n" + (element.text or "")
                break
        outcomes[node] = (outcome, message.strip())
    return outcomes


@contextlib.contextmanager
def _delegated_memory_cgroup() -> Iterator[str]:
    """A child of our v1 memory cgroup owned by the dropped user, or '' where there is none to delegate."""
    parent = memory_cgroup_root()
    if parent is None or parent.version != 1:
        yield ""
        return
    path = parent.path / f"thinktank-unprivileged-{os.getpid()}"
    path.mkdir()
    try:
        for entry in (path, *path.iterdir()):
            os.chown(entry, UID, GID)
        yield str(path)
    finally:
        for child in sorted(path.glob("*/"), reverse=True):
            with contextlib.suppress(OSError):
                child.rmdir()
        with contextlib.suppress(OSError):
            path.rmdir()


def run_python(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 900) -> ChildRun:
    """`python ARGS` in the bind-mounted checkout, as UID; its THINKTANK_TEST_OUT directory (also "{out}" in ARGS)
    is read back."""
    python = _python()
    assert python is not None and os.geteuid() == 0
    out = Path(tempfile.mkdtemp(prefix="thinktank-unprivileged-"))
    os.chown(out, UID, GID)
    site = sysconfig.get_paths()["purelib"]
    child_env = {
        "HOME": HOME, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": f"{HOME}/project:{HOME}/site-packages", "THINKTANK_TEST_OUT": str(out), "TMPDIR": str(out),
        **(env or {}),
    }  # fmt: skip
    with _delegated_memory_cgroup() as cgroup:
        script = "\n".join(
            [
                "set -e",
                f"mount -t tmpfs -o mode=0755,size=8m thinktank-unprivileged {shlex.quote(str(Path(HOME).parent))}",
                f"mkdir -p {HOME}/project {HOME}/site-packages",
                f"chown {UID}:{GID} {HOME} && chmod 0700 {HOME}",
                *(
                    f"mount --bind {shlex.quote(src)} {dst} && mount -o remount,bind,ro {dst}"
                    for src, dst in ((str(PROJECT), f"{HOME}/project"), (site, f"{HOME}/site-packages"))
                ),
                f"echo $$ > {shlex.quote(cgroup)}/cgroup.procs" if cgroup else ":",
                f"cd {HOME}/project",
                "exec setpriv --reuid={0} --regid={0} --clear-groups -- env -i {1} {2}".format(
                    UID,
                    " ".join(shlex.quote(f"{k}={v}") for k, v in child_env.items()),
                    " ".join(shlex.quote(arg.replace("{out}", str(out))) for arg in (python, *args)),
                ),
            ]
        )
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script],
            capture_output=True, text=True, timeout=timeout, check=False, cwd="/",
        )  # fmt: skip
    try:
        files = {entry.name: entry.read_text() for entry in out.iterdir() if entry.is_file()}
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return ChildRun(proc.returncode, proc.stdout + proc.stderr, files)


def run_pytest(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 900) -> ChildRun:
    """`python -m pytest ARGS` as UID, with the outcome of every test read from its JUnit report."""
    child = run_python(["-m", "pytest", "-p", "no:cacheprovider", "--junit-xml={out}/junit.xml", *args], env, timeout)
    if "junit.xml" in child.files:
        child.outcomes = _junit(child.files["junit.xml"])
    return child


@functools.cache
def sandbox_suite(seed: str) -> ChildRun:
    """The sandbox test modules, once per session, as the dropped user; `seed` names the hostile suite's markers."""
    return run_pytest(["-q", *SANDBOX_TESTS], env={"THINKTANK_HOSTILE_SEED": seed})


def failures(results: dict[str, tuple[str, str]]) -> str:
    return "\n\n".join(f"{test}: {outcome}\n{message[-3000:]}" for test, (outcome, message) in results.items())


if __name__ == "__main__":
    if reason := skip_reason():
        raise SystemExit(reason)
    child = run_pytest(sys.argv[1:])
    print(child.output, end="")
    raise SystemExit(child.returncode)
