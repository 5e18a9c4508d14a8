"""`thinktank serve`: architectures behind an OpenAI-compatible API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from thinktank.cli.common import (
    console,
    err_console,
    load_backends,
    load_prices,
    prepare_local,
    served_names,
    speculation_settings,
)
from thinktank.cli.options import (
    ApiKeyEnvOpt,
    BackendOpt,
    BackendsOpt,
    CacheOpt,
    DraftOpt,
    NoCacheOpt,
    NoSpeculativeForOpt,
    NoSpeculativeOpt,
    OtlpOpt,
    PricesOpt,
    SlotsOpt,
)
from thinktank.models.packs import DEFAULT_MODEL, PACKS


def serve(
    arch: Annotated[
        list[str] | None,
        typer.Option("--arch", "-a", help="Preset name or YAML file to serve; repeat for several. Default: every preset."),
    ] = None,
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model(s) the architectures use by default; repeat for several.")
    ] = [  # noqa: B006
        DEFAULT_MODEL
    ],
    backend: BackendOpt = None,
    backends: BackendsOpt = None,
    backend_api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    slots: SlotsOpt = 4,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    api_key_env: Annotated[
        str,
        typer.Option(help="Environment variable holding the key clients must send as a Bearer token; unset or empty: no auth."),
    ] = "THINKTANK_API_KEY",
    max_concurrency_per_key: Annotated[int, typer.Option(min=1, help="Requests one API key (or client) runs at once.")] = 16,
    queue: Annotated[int, typer.Option(min=0, help="Requests one key may have waiting; beyond: 429 + Retry-After.")] = 64,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a request may run (queueing excluded); then 504.")] = 600.0,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body; larger: 413.")] = 1 << 20,
    no_cache: NoCacheOpt = False,
    cache: CacheOpt = None,
    prices: PricesOpt = None,
    corpus: Annotated[
        Path | None,
        typer.Option(
            help="Answer grounded in this corpus (a directory of .txt/.md files or a passages JSONL): requests become"
            " retrieval QA (kind qa) for the rag-* presets, the passage ids used in the `thinktank` field.",
        ),
    ] = None,
    otlp: OtlpOpt = None,
    no_speculative: NoSpeculativeOpt = True,
    no_speculative_for: NoSpeculativeForOpt = None,
    draft: DraftOpt = None,
) -> None:
    """Serve architectures behind an OpenAI-compatible API: the request's `model` names the architecture."""
    import functools

    import uvicorn

    from thinktank.arch import load_architecture, servable_presets
    from thinktank.runtime import open_engine
    from thinktank.serve import ServeSettings, create_app
    from thinktank.telemetry import exporting, resolve_endpoint

    if corpus is not None and not corpus.exists():
        raise typer.BadParameter(f"{corpus} does not exist", param_hint="--corpus")
    resolve_endpoint(otlp)  # a malformed URL fails before any work
    pools = load_backends(backends)
    names = served_names(model, backend, pools)
    if arch:
        architectures = [load_architecture(a, names) for a in arch]
    else:  # every preset whose models are here (or can be pulled: the defaults)
        architectures, skipped = servable_presets(names, local=backend is None)
        for preset, missing in skipped.items():
            pulls = "; ".join(f"`thinktank models pull {m}`" for m in missing)
            console.print(f"[dim]not serving {preset}: needs {', '.join(missing)} ({pulls})[/dim]")
    used = list(dict.fromkeys(m for a in architectures for m in a.models)) or names
    speculation = speculation_settings(no_speculative, no_speculative_for, draft)
    if backend is None:
        refs = [ref for ref, name in zip(model, names, strict=True) if name in used]
        used = list(dict.fromkeys([*refs, *(m for m in used if m not in names)]))
        prepare_local([m for m in used if m in PACKS or m in model], pools, speculation=speculation)
    api_key = os.environ.get(api_key_env) or None
    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"[yellow]warning:[/yellow] ${api_key_env} is not set: anyone reaching {host}:{port} can use this server"
        )
    settings = ServeSettings(
        api_key=api_key,
        max_concurrency_per_key=max_concurrency_per_key,
        queue_per_key=queue,
        timeout_s=timeout,
        max_body_bytes=max_body_bytes,
        use_cache=not no_cache,
        corpus=str(corpus.resolve()) if corpus is not None else None,
    )
    engine = functools.partial(
        open_engine,
        used,
        backend_url=backend,
        api_key=os.environ.get(backend_api_key_env),
        slots=slots,
        use_cache=not no_cache,
        cache_path=cache,
        prices=load_prices(prices),
        pools=pools,
        speculation=speculation,
    )
    with exporting(otlp, service_name="thinktank-serve") as telemetry:
        application = create_app(engine, architectures, settings, telemetry)
        auth = "API key required" if api_key else "no auth"
        console.print(f"serving {', '.join(a.name for a in architectures)} at http://{host}:{port}/v1 ({auth})")
        uvicorn.run(application, host=host, port=port, log_level="info", timeout_graceful_shutdown=int(timeout) + 5)
