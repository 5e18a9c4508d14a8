"""The embedded default backend: a managed `llama-server` subprocess on loopback.

    async with LlamaServer("qwen2.5-coder-0.5b-instruct", slots=4) as server:
        engine = Engine({server.model: server.backend()})

Ephemeral servers die with their parent: stopped in `__aexit__` (also on Ctrl-C, which
asyncio turns into cancellation), and the kernel sends SIGTERM if the parent dies
without cleaning up (PR_SET_PDEATHSIG). Long-lived servers (`thinktank backend start`)
are detached and recorded in a state file so later commands find and stop them.

Seeded samples of one query share a call (`n` > 1): llama-server evaluates the prompt once
and copies it into one slot per choice, and choice i is seeded s+i, so the samples are the
ones n separate calls with seeds s, s+1, … would give. Its `usage` covers only the first
choice, so such a call is streamed and each choice's tokens are read from the usage chunk the
server sends after it (`count_choice_tokens`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

import httpx

from thinktank._paths import cache_dir
from thinktank.backends.http_errors import map_httpx_errors, status_error
from thinktank.backends.llama_build import ensure_llama_server, free_port
from thinktank.backends.openai_compat import OpenAICompatBackend
from thinktank.backends.speculation import Speculation, SpeculationSettings
from thinktank.exceptions import BackendError, BackendStartError, ThinktankError
from thinktank.models.gguf import read_vocab, vocab_mismatch
from thinktank.models.packs import model_label, resolve

PR_SET_PDEATHSIG = 1
log = logging.getLogger("thinktank.backends")

#: what llama-server logs when it drops speculation at start-up (and then serves without it)
SPECULATION_FAILED_LINES = ("failed to initialize speculative decoding", "speculative decoding not supported")


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGTERM us when the parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _run_in_background() -> None:
    """Runs in the child before exec: SCHED_IDLE, inherited by every thread llama-server starts."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _child_setup(*, die_with_parent: bool, background: bool) -> Callable[[], None] | None:
    steps = [step for step, wanted in ((_die_with_parent, die_with_parent), (_run_in_background, background)) if wanted]
    if not steps:
        return None

    def setup() -> None:
        for step in steps:
            step()

    return setup


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class ServerState:
    """What `thinktank backend start` leaves behind for `status` and `stop`."""

    model: str
    pid: int
    host: str
    port: int
    slots: int
    log: str

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


def _state_file(model: str) -> Path:
    return cache_dir("servers") / f"{model}.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie or a recycled pid is not our server
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return b"llama-server" in cmdline and ") Z " not in stat


def running_servers() -> list[ServerState]:
    """Long-lived servers whose process is still alive; stale state files are removed."""
    alive = []
    for path in sorted(cache_dir("servers").glob("*.json")):
        try:
            state = ServerState(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if _pid_alive(state.pid):
            alive.append(state)
        else:
            path.unlink(missing_ok=True)
    return alive


def find_running(model: str) -> ServerState | None:
    return next((s for s in running_servers() if s.model == model), None)


class LlamaServer:
    def __init__(
        self,
        model: str,
        *,
        slots: int = 4,
        ctx_per_slot: int = 4096,
        threads: int | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float = 120.0,
        detached: bool = False,
        binary: Path | None = None,
        embedding: bool = False,
        speculation: Speculation | None = None,
        repack: bool | None = None,
        poll: int | None = None,
        cpus: str | None = None,
        background: bool = False,
    ) -> None:
        """`binary`: a llama-server executable to run instead of thinktank's own build (e.g. to compare two builds).

        `embedding`: serve `/v1/embeddings` (mean-pooled, so a generative pack works too) instead of generation.

        `speculation`: how it decodes speculatively (`backends/speculation.py`); default: the model's default (its
        pack's draft, n-gram lookup), none for an embedding server. A draft whose vocabulary does not match the
        model's is refused before start-up: the server starts without it, `draft_refused` says why, and a warning
        is logged. The draft shares the server's threads (`-t`), so it costs its weights' and KV cache's RAM but no
        extra cores.

        A speculating server keeps its weights as stored (`--no-repack`): repacked Q4_K weights are multiplied by one
        kernel for a single token and another for several, whose last bits differ, so a greedy call verified in a
        batch could pick another token at a near-tie. One kernel for every batch size keeps speculation lossless.
        Without speculation (the default) weights are repacked, which evaluated prompts up to 1.8x faster here
        (docs/benchmarks.md); `repack=` overrides either way.

        `poll`: llama-server's `--poll` (0-100; its default 50 spins idle threads, which starves a neighbour server);
        `cpus`: a CPU range "lo-hi" its threads are pinned to (`--cpu-range`, strict). None leaves llama-server's own.

        `background`: its threads run under SCHED_IDLE, taking the cores only when no ordinary thread wants them.
        Measured beside a busy neighbour server it does not stop the two from slowing each other ~4x (docs/benchmarks.md,
        "Several embedded servers on one machine"): the engine makes them take turns instead (`backends/turns.py`)."""
        self.binary = binary
        self.embedding = embedding
        if speculation is None:
            speculation = Speculation() if embedding else SpeculationSettings().for_model(model)
        self.speculation = speculation
        self.repack = (embedding or not speculation.enabled) if repack is None else repack
        self.draft_refused: str | None = None
        self.speculation_failed: str | None = None
        self.model_ref = model
        self.model = model_label(model)
        self.slots = slots
        self.ctx_per_slot = ctx_per_slot
        self.threads = threads or os.cpu_count() or 2
        self.poll = poll
        self.cpus = cpus
        self.background = background
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.detached = detached
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = cache_dir("logs") / f"llama-server-{self.model}{'-embedding' if embedding else ''}.log"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self, binary: Path, model_path: Path, draft_path: Path | None = None) -> list[str]:
        return [
            str(binary),
            "-m", str(model_path),
            "--host", self.host,
            "--port", str(self.port),
            "-np", str(self.slots),
            "-c", str(self.slots * self.ctx_per_slot),
            "-t", str(self.threads),
            "--alias", self.model,
            "--metrics",
            "--no-webui",
            *(("--embedding", "--pooling", "mean") if self.embedding else ()),
            *(() if self.repack else ("--no-repack",)),
            *(() if self.poll is None else ("--poll", str(self.poll))),
            *(() if self.cpus is None else ("--cpu-range", self.cpus, "--cpu-strict", "1")),
            *self.speculation.args(draft_path),
        ]  # fmt: skip

    def _checked_draft(self, model_path: Path) -> Path | None:
        """The draft's file if it may draft for this model; else None, with the reason in `draft_refused`."""
        draft = self.speculation.draft
        if draft is None:
            return None
        try:
            draft_path = resolve(draft)
            reason = vocab_mismatch(read_vocab(model_path), read_vocab(draft_path))
        except ThinktankError as exc:
            reason = str(exc)
        if reason is None:
            return draft_path
        self.draft_refused = f"draft {draft!r} refused for {self.model}: {reason}"
        log.warning("%s; starting without a draft model", self.draft_refused)
        return None

    async def start(self) -> None:
        model_path = await asyncio.to_thread(resolve, self.model_ref)
        draft_path = await asyncio.to_thread(self._checked_draft, model_path)
        binary = self.binary if self.binary is not None else await asyncio.to_thread(ensure_llama_server)
        if self.port is None:
            self.port = free_port(self.host)
        elif port_in_use(self.host, self.port):
            raise BackendStartError(f"port {self.port} on {self.host} is in use; pick another with --port or omit it")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(binary, model_path, draft_path),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop it in order
                preexec_fn=_child_setup(die_with_parent=not self.detached, background=self.background),
            )
        try:
            await self._wait_healthy()
        except BaseException:
            self.terminate(timeout_s=1.0)  # still loading: nothing to shut down gracefully, so Ctrl-C is prompt
            raise
        await self._check_speculation()
        if self.detached:
            state = ServerState(self.model, self.process.pid, self.host, self.port, self.slots, str(self.log_path))
            _state_file(self.model).write_text(json.dumps(asdict(state)))

    async def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BackendStartError(
                        f"llama-server exited with code {self.process.returncode} during start-up: {self.log_tail()}",
                        str(self.log_path),
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"http://{self.host}:{self.port}/health")
                    if response.status_code == 200:
                        return
                await asyncio.sleep(0.1)  # polling a child's readiness, not pacing API calls
        raise BackendStartError(f"llama-server not healthy after {self.startup_timeout_s:.0f}s", str(self.log_path))

    async def _check_speculation(self) -> None:
        """llama-server serves without speculation when it cannot set it up; say so rather than run slower silently.
        Its `/slots` tell whether each slot speculates; the log (shared by servers of one model) only why."""
        if not self.speculation.enabled:
            return
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(f"http://{self.host}:{self.port}/slots")
            slots = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        failed = speculation_failure(slots, lines)
        if failed is not None:
            self.speculation_failed = f"llama-server for {self.model} runs without speculative decoding: {failed}"
            log.warning("%s (log: %s)", self.speculation_failed, self.log_path)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def death_notice(self) -> str | None:
        """Why our server process is gone (exit status, log), or None while it runs or was stopped by us."""
        process = self.process
        if process is None or process.poll() is None:
            return None
        code = process.returncode
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code < 0 and -code in signal.valid_signals()
            else f"exited with code {code}"
        )
        return (
            f"the embedded llama-server for {self.model} (pid {process.pid}) {how} during the run"
            f"{' (out of memory?)' if code == -signal.SIGKILL else ''}; its log: {self.log_path}"
            f" (last lines: {self.log_tail(3) or 'empty'}). Re-run the command to resume where it stopped"
        )

    def backend(self, **kwargs: object) -> OpenAICompatBackend:
        return llama_server_backend(self.base_url, self.slots, explain_unreachable=self.death_notice, **kwargs)

    def terminate(self, timeout_s: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    async def stop(self) -> None:
        await asyncio.to_thread(self.terminate)

    async def __aenter__(self) -> LlamaServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.terminate()  # synchronous on purpose: must finish even while the task is being cancelled


def speculation_failure(slots: object, log_lines: list[str]) -> str | None:
    """Why a server asked to speculate does not (its `/slots` JSON, its log), or None when every slot speculates."""
    if not isinstance(slots, list) or not slots or all(isinstance(s, dict) and s.get("speculative") for s in slots):
        return None
    reasons = [line.strip() for line in log_lines if any(marker in line for marker in SPECULATION_FAILED_LINES)]
    return reasons[0] if reasons else "its /slots report speculative: false"


def stop_detached(model: str, timeout_s: float = 10.0) -> bool:
    """Stop a long-lived server started by `thinktank backend start`; False if none ran."""
    state = find_running(model)
    if state is None:
        return False
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(state.pid):
        os.kill(state.pid, signal.SIGKILL)
    _state_file(model).unlink(missing_ok=True)
    return True


def llama_server_backend(base_url: str, slots: int, **kwargs: object) -> OpenAICompatBackend:
    """A client for llama-server: seeded samples share one call (prompt evaluated once, choice i seeded s+i),
    at most `slots` choices per call, streamed so that each choice's own usage can be read."""
    options: dict[str, object] = {
        "max_concurrency": slots,
        "supports_native_n": True,
        "seeded_native_n": True,
        "max_n_per_call": slots,
        "count_choice_tokens": True,
    }
    return OpenAICompatBackend(base_url, **{**options, **kwargs})  # type: ignore[arg-type]


def server_metrics(base_url: str) -> dict[str, float]:
    """llama-server's Prometheus counters (e.g. `llamacpp:tokens_predicted_total`): what it says it spent."""
    url = f"{base_url.removesuffix('/v1')}/metrics"
    with map_httpx_errors(url):
        response = httpx.get(url, timeout=10)
    if response.status_code >= 400:
        raise status_error(response, url)
    return parse_metrics(response.text, url)


def parse_metrics(text: str, url: str = "llama-server") -> dict[str, float]:
    """Every sample of a Prometheus text exposition, by its name, labelled ones as `name{label="value",...}`."""
    # Imported here: prometheus_client costs ~70 ms to import, and most commands that start a server never read it.
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return {
            _sample_key(sample.name, sample.labels): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
    except ValueError as exc:
        raise BackendError(f"{url} answered metrics that are not Prometheus text: {exc}", url) from exc


def _sample_key(name: str, labels: dict[str, str]) -> str:
    """The sample as Prometheus writes it (labels sorted, values escaped), so a key reads like the server's line."""
    if not labels:
        return name
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in labels.values())
    pairs = ",".join(f'{k}="{v}"' for k, v in sorted(zip(labels, escaped, strict=True)))
    return f"{name}{{{pairs}}}"
