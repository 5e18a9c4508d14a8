"""Backends declared in a YAML file (`--backends FILE`): models under the user's own names, each a pool of endpoints.

    models:
      coder:                                   # the name --model and architectures use
        kind: vllm                             # openai (default), vllm, sglang or llama.cpp
        model: Qwen/Qwen2.5-Coder-7B-Instruct  # the name the servers know it by (default: the key)
        api_key_env: VLLM_API_KEY              # the variable holding the key (an endpoint may name its own)
        prices: {prompt_per_mtok: 0.10, completion_per_mtok: 0.30}
        endpoints:
          - {url: http://gpu1:8000/v1, slots: 32}
          - {url: http://gpu2:8000/v1, slots: 32}
      mini:
        model: gpt-4o-mini
        endpoints: [{url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY, slots: 16}]
    health_interval_s: 2                       # how often an out replica's health is polled

Every model is one `PoolBackend` (one endpoint is a pool of one). The kind decides what the engine may
ask of a server and where its health is read: llama.cpp shares one call among seeded samples (n up to its
slots) and reads each choice's usage from a stream; vLLM, SGLang and llama.cpp answer `<root>/health`;
OpenAI is asked `GET /v1/models`. `health_url` overrides that per endpoint.

The file is validated with pydantic, and every error names the file and line, as architecture YAML does
(`thinktank._yaml`): malformed YAML, unknown keys, wrong types, an API-key variable that is not set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from thinktank._yaml import Lines, locate, yaml_with_lines
from thinktank.backends.llama_server import llama_server_backend
from thinktank.backends.openai_compat import OpenAICompatBackend
from thinktank.backends.pool import PoolBackend, Replica, http_health
from thinktank.backends.retry import RetryPolicy
from thinktank.exceptions import ConfigError
from thinktank.usage import Price, PriceTable

__all__ = ["BackendsConfig", "BackendsSpec", "EndpointSpec", "ModelSpec", "load_backends"]

Kind = Literal["openai", "vllm", "sglang", "llama.cpp"]


class EndpointSpec(BaseModel):
    """One server of a model's pool."""

    model_config = ConfigDict(extra="forbid")

    url: str
    slots: int = Field(4, ge=1, le=4096)
    api_key_env: str | None = None
    #: the name this server knows the model by, when it differs from the model's `model`
    model: str | None = None
    health_url: str | None = None

    @field_validator("url", "health_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"an http:// or https:// URL expected, got {value!r}")
        return value.rstrip("/") if value is not None else None


class ModelSpec(BaseModel):
    """One model, served by every endpoint of its pool."""

    model_config = ConfigDict(extra="forbid")

    endpoints: list[EndpointSpec] = Field(min_length=1)
    kind: Kind = "openai"
    model: str | None = None
    api_key_env: str | None = None
    prices: Price | None = None
    #: most choices one call may ask for (llama.cpp: its slots; 1 when other clients share the servers)
    max_n_per_call: int | None = Field(None, ge=1)
    timeout_s: float = Field(600.0, gt=0)


class BackendsSpec(BaseModel):
    """A whole backends file."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelSpec] = Field(min_length=1)
    health_interval_s: float = Field(2.0, gt=0)
    health_timeout_s: float = Field(5.0, gt=0)
    #: retries of a call once every live replica failed it (failing over to another replica is not a retry)
    max_retries: int = Field(3, ge=0)


def _schema_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The schema the mapping at `loc` is validated against, to list the keys allowed there."""
    if len(loc) >= 2 and loc[0] == "models":
        if len(loc) >= 4 and loc[2] == "endpoints":
            return EndpointSpec
        if len(loc) >= 3 and loc[2] == "prices":
            return Price
        return ModelSpec
    return BackendsSpec


@dataclass(frozen=True)
class BackendsConfig:
    """A validated backends file whose API-key variables were all found; `build()` makes its pools."""

    source: str
    spec: BackendsSpec
    #: (model, endpoint index) -> the API key, read when the file was loaded
    api_keys: dict[tuple[str, int], str | None]

    @property
    def names(self) -> list[str]:
        return list(self.spec.models)

    def __contains__(self, name: object) -> bool:
        return name in self.spec.models

    def slots(self, names: list[str] | None = None) -> int:
        """The slots of these models' pools together (default: every model's)."""
        chosen = self.names if names is None else [n for n in names if n in self]
        return sum(e.slots for n in chosen for e in self.spec.models[n].endpoints)

    def prices(self, overrides: PriceTable | None = None) -> PriceTable:
        """The file's prices, with `overrides` (a `--prices` table) winning for the models it names."""
        table = {name: m.prices for name, m in self.spec.models.items() if m.prices is not None}
        return PriceTable(prices={**table, **(overrides.prices if overrides else {})})

    def build(self) -> dict[str, PoolBackend]:
        """One pool per model (its clients not yet connected: enter each with `async with`)."""
        spec = self.spec
        policy = RetryPolicy(max_retries=spec.max_retries)
        pools = {}
        for name, model in spec.models.items():
            replicas = []
            for i, endpoint in enumerate(model.endpoints):
                key = self.api_keys[(name, i)]
                replicas.append(
                    Replica(
                        _client(model, endpoint, key),
                        endpoint.slots,
                        health=http_health(
                            endpoint.health_url or _health_url(model.kind, endpoint.url),
                            api_key=key,
                            timeout_s=spec.health_timeout_s,
                        ),
                        model=endpoint.model or model.model or name,
                    )
                )
            pools[name] = PoolBackend(name, replicas, retry_policy=policy, health_interval_s=spec.health_interval_s,
                                      health_timeout_s=spec.health_timeout_s)  # fmt: skip
        return pools


def _client(model: ModelSpec, endpoint: EndpointSpec, api_key: str | None) -> OpenAICompatBackend:
    """The endpoint's client, retrying nothing itself: the pool retries, on another replica when it can."""
    options: dict[str, Any] = {"api_key": api_key, "timeout_s": model.timeout_s, "max_retries": 0}
    if model.kind == "llama.cpp":
        if model.max_n_per_call is not None:
            options["max_n_per_call"] = model.max_n_per_call
        return llama_server_backend(endpoint.url, endpoint.slots, **options)
    if model.max_n_per_call is not None:
        options["max_n_per_call"] = model.max_n_per_call
    return OpenAICompatBackend(endpoint.url, max_concurrency=endpoint.slots, **options)


def _health_url(kind: Kind, url: str) -> str:
    if kind == "openai":
        return f"{url}/models"
    return f"{url.removesuffix('/v1')}/health"


def load_backends(path: str | Path, environ: dict[str, str] | None = None) -> BackendsConfig:
    """Read and validate a backends file; every problem is a `ConfigError` naming `file:line`."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read backends file {path}: {exc.strerror or exc}") from exc
    data, lines = yaml_with_lines(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{locate(source, lines)}: a backends file is a mapping with a `models:` key, got {data!r}")
    try:
        spec = BackendsSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError("\n".join(_located(source, lines, error) for error in exc.errors())) from None
    env = os.environ if environ is None else environ
    keys: dict[tuple[str, int], str | None] = {}
    problems = []
    for name, model in spec.models.items():
        seen: set[str] = set()
        for i, endpoint in enumerate(model.endpoints):
            if endpoint.url in seen:
                where = locate(source, lines, "models", name, "endpoints", i, "url")
                problems.append(f"{where}: models.{name}.endpoints[{i}].url: {endpoint.url} is listed twice")
            seen.add(endpoint.url)
            variable = endpoint.api_key_env or model.api_key_env
            if variable is None:
                keys[(name, i)] = None
            elif env.get(variable):
                keys[(name, i)] = env[variable]
            else:
                at = ("models", name, "endpoints", i, "api_key_env") if endpoint.api_key_env else ("models", name, "api_key_env")
                problems.append(f"{locate(source, lines, *at)}: ${variable} (the API key for {endpoint.url}) is not set")
    if problems:
        raise ConfigError("\n".join(problems))
    return BackendsConfig(source, spec, keys)


def _located(source: str, lines: Lines, error: Any) -> str:
    loc = tuple(error["loc"])
    field = ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in loc).replace(".[", "[") or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(_schema_at(loc[:-1]).model_fields)
        message = f"unknown key {loc[-1]!r}; allowed here: {allowed}"
    else:
        message = error["msg"]
    return f"{locate(source, lines, *loc)}: {field}: {message}"
