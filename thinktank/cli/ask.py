"""`thinktank ask`: one question through the engine."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from thinktank.cli.common import console, load_backends, prepare_local, run_async, served_names, speculation_settings
from thinktank.cli.options import (
    ApiKeyEnvOpt,
    BackendOpt,
    BackendsOpt,
    CacheOpt,
    DraftOpt,
    ModelOpt,
    NoSpeculativeForOpt,
    NoSpeculativeOpt,
    PricesOpt,
)
from thinktank.models.packs import DEFAULT_MODEL


def ask(
    prompt: Annotated[str, typer.Argument(help="The question or instruction.")],
    model: ModelOpt = DEFAULT_MODEL,
    n: Annotated[int, typer.Option("--n", "-n", min=1, max=64, help="Number of samples.")] = 1,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    max_tokens: Annotated[int, typer.Option(min=1, max=32768)] = 256,
    seed: Annotated[int | None, typer.Option(help="Base seed; sample i uses seed+i.")] = None,
    backend: BackendOpt = None,
    backends: BackendsOpt = None,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")] = False,
    cache: CacheOpt = None,
    prices: PricesOpt = None,
    no_speculative: NoSpeculativeOpt = True,
    no_speculative_for: NoSpeculativeForOpt = None,
    draft: DraftOpt = None,
) -> None:
    """Ask one question through the engine; prints the answer(s) and a usage line."""
    from thinktank.runtime import open_engine
    from thinktank.types import GenerationRequest

    pools = load_backends(backends)
    speculation = speculation_settings(no_speculative, no_speculative_for, draft)
    if backend is None:
        prepare_local([model], pools, speculation=speculation)

    async def go() -> None:
        async with open_engine(
            [model],
            backend_url=backend,
            api_key=os.environ.get(api_key_env),
            use_cache=not no_cache,
            pools=pools,
            cache_path=cache,
            speculation=speculation,
        ) as engine:
            ctx = engine.context(use_cache=not no_cache)
            request = GenerationRequest.from_prompt(
                prompt,
                served_names([model], backend, pools)[0],
                n=n,
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
            )
            completions = await ctx.generate(request)
        for c in completions:
            if n > 1:
                console.rule(f"sample {c.sample_index}{' (cached)' if c.cached else ''} · {c.finish_reason}")
            console.print(c.text, markup=False, highlight=False)
        console.print(f"[dim]usage: {ctx.usage.summary()}[/dim]")

    run_async(go())
