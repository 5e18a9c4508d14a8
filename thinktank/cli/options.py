"""The options several commands share, with their help text written once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model pack name or path to a .gguf file (or a remote model name).")]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend", help="Base URL of an OpenAI-compatible server (e.g. http://host:8000/v1). Default: embedded llama-server."
    ),
]
BackendsOpt = Annotated[
    Path | None,
    typer.Option(
        "--backends",
        help="YAML file of models served by pools of endpoints (URLs, API-key variables, slots, prices; vLLM, SGLang,"
        " llama.cpp, OpenAI): those names are routed to their pools, others as without it. See docs/architecture.md.",
    ),
]
ApiKeyEnvOpt = Annotated[str, typer.Option(help="Environment variable holding the remote server's API key.")]
PricesOpt = Annotated[
    Path | None,
    typer.Option(
        "--prices", help="YAML price table: {model: {prompt_per_mtok: 0.15, completion_per_mtok: 0.6}} (USD per 1M tokens)."
    ),
]


NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not use the response cache.")]
CacheOpt = Annotated[
    str | None,
    typer.Option(
        "--cache",
        help="Response cache: a SQLite file, or a postgresql://user@host:port/db URL shared by processes and machines"
        " (identical misses make one backend call across all of them; needs thinktank[postgres])."
        " Default: $THINKTANK_CACHE_URL, else responses.sqlite in the cache dir.",
    ),
]
SlotsOpt = Annotated[int, typer.Option(min=1, max=64, help="Parallel slots of each embedded server.")]
#: eval's and search's default: decode throughput on 2 cores kept rising up to 16 slots (2.88x one slot, 1.73x four;
#: docs/benchmarks.md, "Decode throughput against slot count"); serve keeps 4, since each stream slows as slots grow
BATCH_SLOTS = 16
OtlpOpt = Annotated[
    str | None,
    typer.Option(
        "--otlp",
        help="Export each query's trace as OpenTelemetry spans to this OTLP/HTTP endpoint (e.g. http://localhost:4318)."
        " Default: $OTEL_EXPORTER_OTLP_ENDPOINT, if set. Needs thinktank[otel].",
    ),
]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="Spread the problems over a Ray cluster: auto (the one `ray start` runs here), local (a one-node cluster for"
        " this command), or HOST:PORT of a head node. Needs thinktank[ray] on every node (docs/scaling.md).",
    ),
]
RayWorkersOpt = Annotated[
    int | None, typer.Option(min=1, help="With --ray: worker actors, each with its own engine (default: one per node).")
]
NoSpeculativeOpt = Annotated[
    bool,
    typer.Option(
        "--no-speculative/--speculative",
        help="--speculative: embedded servers decode speculatively (the pack's draft model and n-gram lookup; lossless,"
        " weights then kept unrepacked so batch and single-token kernels agree). Default: off — on this 2-core machine"
        " the 0.5B draft made the 1.5B slower and repacked weights are faster (docs/benchmarks.md).",
    ),
]
NoSpeculativeForOpt = Annotated[
    list[str] | None,
    typer.Option("--no-speculative-for", help="No speculative decoding for this model's embedded server; repeat for several."),
]
DraftOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--draft",
        help="MODEL=DRAFT: the draft model (pack or .gguf) MODEL's embedded server speculates with, or MODEL=none."
        " Default: the pack's own (qwen2.5-coder-1.5b-instruct: qwen2.5-coder-0.5b-instruct). A draft whose vocabulary"
        " differs from MODEL's is refused with the reason, and the server starts without one.",
    ),
]
