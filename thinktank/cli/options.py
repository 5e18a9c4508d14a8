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
ApiKeyEnvOpt = Annotated[str, typer.Option(help="Environment variable holding the remote server's API key.")]
PricesOpt = Annotated[
    Path | None,
    typer.Option(
        "--prices", help="YAML price table: {model: {prompt_per_mtok: 0.15, completion_per_mtok: 0.6}} (USD per 1M tokens)."
    ),
]


NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Do not use the response cache.")]
SlotsOpt = Annotated[int, typer.Option(min=1, max=64, help="Parallel slots of each embedded server.")]
OtlpOpt = Annotated[
    str | None,
    typer.Option(
        "--otlp",
        help="Export each query's trace as OpenTelemetry spans to this OTLP/HTTP endpoint (e.g. http://localhost:4318)."
        " Default: $OTEL_EXPORTER_OTLP_ENDPOINT, if set. Needs thinktank[otel].",
    ),
]
NoSpeculativeOpt = Annotated[
    bool,
    typer.Option(
        "--no-speculative",
        help="Embedded servers decode without speculation (no draft model, no n-gram lookup). Default: on, lossless.",
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
