"""Architectures: layers of technique nodes, declared in YAML or built in Python.

    name: sample-8-vote
    layers:
      - generate: {n: 8, temperature: 0.8}
      - vote: {}

Nodes of one layer run in parallel on the same input candidates and their outputs are
concatenated (an ensemble is two `generate` nodes in one layer); layers run in order.
A technique's constructor signature is its schema: parameters are validated with
pydantic against it, and an error names the file, line and field.

    arch = load_architecture("sample-8-vote", default_models=["qwen2.5-coder-0.5b-instruct"])
    result = await arch.run(task_input, ctx)
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic

from thinktank._aio import gather_all
from thinktank._yaml import locate, yaml_with_lines
from thinktank.engine.engine import Context
from thinktank.engine.trace import TraceNode
from thinktank.exceptions import BudgetExceeded, ConfigError
from thinktank.plugins import is_import_path, resolve_class
from thinktank.tasks.base import TaskInput
from thinktank.techniques.base import Candidate, Technique
from thinktank.usage import Usage

#: technique name -> "module:Class"; imported on first use. A name with a colon (`package.module:Class`) is a
#: user's technique, imported by `thinktank.plugins` without a line here.
TECHNIQUES: dict[str, str] = {
    "adaptive": "thinktank.techniques.adaptive:AdaptiveSample",
    "cascade": "thinktank.techniques.cascade:Cascade",
    "critique": "thinktank.techniques.critique:CritiqueRefine",
    "fuse": "thinktank.techniques.fuse:Fuse",
    "gen_tests": "thinktank.techniques.gen_tests:GenTests",
    "generate": "thinktank.techniques.generate:Generate",
    "permute": "thinktank.techniques.permute:Permute",
    "program": "thinktank.techniques.program:Program",
    "rank": "thinktank.techniques.rank:Rank",
    "read": "thinktank.techniques.read:Read",
    "repair": "thinktank.techniques.repair:Repair",
    "rerank": "thinktank.techniques.rerank:Rerank",
    "retrieve": "thinktank.techniques.retrieve:Retrieve",
    "verify_exec": "thinktank.techniques.verify_exec:VerifyExec",
    "vote": "thinktank.techniques.vote:Vote",
}


def technique_class(name: str) -> type[Technique]:
    """A shipped technique by its short name, or any `Technique` subclass by `package.module:Class`."""
    if is_import_path(name):
        return resolve_class(name, Technique, what="technique")  # type: ignore[type-abstract]
    if name not in TECHNIQUES:
        raise ConfigError(
            f"unknown technique {name!r}; known: {', '.join(sorted(TECHNIQUES))} (or a 'package.module:Class' path)"
        )
    module, cls = TECHNIQUES[name].split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


@dataclass
class Node:
    name: str
    technique: Technique
    on_error: str = "fail"  # "fail" the query, or "skip": pass the input candidates on


@dataclass
class ArchResult:
    answer: Candidate | None
    candidates: list[Candidate]
    trace: TraceNode
    budget_cut: bool = False
    error: str | None = None

    @property
    def usage(self) -> Usage:
        return self.trace.usage


class Architecture:
    def __init__(self, name: str, layers: list[list[Node]], spec: dict[str, Any] | None = None) -> None:
        self.name, self.layers, self.spec = name, layers, spec or {}

    @property
    def models(self) -> list[str]:
        found: list[str] = []
        for layer in self.layers:
            for node in layer:
                found += [m for m in getattr(node.technique, "models", []) if m not in found]
                model = getattr(node.technique, "model", None)
                if isinstance(model, str) and model not in found:
                    found.append(model)
        return found

    async def run(self, task: TaskInput, ctx: Context) -> ArchResult:
        """Run every layer; on budget exhaustion return the best candidate so far, marked."""
        candidates: list[Candidate] = []
        root = ctx.node
        root.notes["architecture"] = self.name
        try:
            for layer in self.layers:
                candidates = await self._run_layer(layer, task, ctx, candidates)
        except BudgetExceeded as exc:
            root.error = f"budget exhausted: {exc}"
            return ArchResult(candidates[0] if candidates else None, candidates, root, budget_cut=True, error=root.error)
        if not candidates:
            root.error = "the architecture produced no candidate"
            return ArchResult(None, [], root, error=root.error)
        return ArchResult(candidates[0], candidates, root)

    async def _run_layer(self, layer: list[Node], task: TaskInput, ctx: Context, inputs: list[Candidate]) -> list[Candidate]:
        async def run_node(node: Node) -> list[Candidate]:
            node_ctx = ctx.child(node.name)
            node_ctx.node.technique = type(node.technique).__name__
            try:
                return await node.technique.apply(node_ctx, task, [_own_copy(c) for c in inputs])
            except BudgetExceeded:
                node_ctx.node.error = "budget exhausted"
                raise
            except Exception as exc:
                node_ctx.node.error = f"{type(exc).__name__}: {exc}"
                if node.on_error == "skip":
                    return list(inputs)
                raise
            finally:
                node_ctx.node.close()

        return [c for batch in await gather_all(run_node(node) for node in layer) for c in batch]


def _own_copy(candidate: Candidate) -> Candidate:
    """A node's own copy of an input candidate: nodes of one layer run side by side and write scores and verdicts,
    so sharing the dicts would let one node's scores leak into (or be overwritten in) another node's output."""
    return dataclasses.replace(
        candidate, scores=dict(candidate.scores), verdicts={k: dict(v) for k, v in candidate.verdicts.items()}
    )


# --- building from a spec -------------------------------------------------------------------


def build_architecture(
    spec: Any, default_models: list[str], *, source: str = "<spec>", lines: dict[tuple[Any, ...], int] | None = None
) -> Architecture:
    lines = lines or {}

    def where(*path: Any) -> str:
        return locate(source, lines, *path)

    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list) or not spec["layers"]:
        raise ConfigError(f"{where()}: an architecture needs a non-empty `layers:` list")
    name = str(spec.get("name", "custom"))
    layers: list[list[Node]] = []
    for li, layer_spec in enumerate(spec["layers"]):
        items = layer_spec if isinstance(layer_spec, list) else [layer_spec]
        layer = []
        for ni, item in enumerate(items):
            path = ("layers", li, ni) if isinstance(layer_spec, list) else ("layers", li)
            if not isinstance(item, dict) or len(item) != 1:
                raise ConfigError(f"{where(*path)}: each node is one `technique: {{params}}` mapping, got {item!r}")
            ((kind, params),) = item.items()
            params = dict(params or {})
            node_name = str(params.pop("name", f"{kind}{li}" if ni == 0 else f"{kind}{li}.{ni}"))
            on_error = params.pop("on_error", "fail")
            if on_error not in ("fail", "skip"):
                raise ConfigError(f"{where(*path, kind, 'on_error')}: on_error must be 'fail' or 'skip'")
            try:
                cls = technique_class(kind)
            except ConfigError as exc:
                raise ConfigError(f"{where(*path, kind)}: {exc}") from None
            params = _build_sub_architectures(cls, params, default_models)
            technique = _construct(cls, params, default_models, lambda field, p=path, k=kind: where(*p, k, field))
            technique.name = node_name
            layer.append(Node(node_name, technique, on_error))
        layers.append(layer)
    return Architecture(name, layers, spec)


def _build_sub_architectures(cls: type[Technique], params: dict[str, Any], default_models: list[str]) -> dict[str, Any]:
    """Build the parameters a technique declares as architectures (`Cascade.stages`), so that it receives built ones.

    They are built with the technique's own `models:` if it gives them (and takes no `models` itself), else with
    the run's defaults. A value that is not a list is left for the parameter validation to reject.
    """
    names: tuple[str, ...] = getattr(cls, "architecture_params", ())
    if not names:
        return params
    takes_models = "models" in inspect.signature(cls.__init__).parameters
    stage_models = default_models if takes_models else list(params.pop("models", None) or default_models)
    for param in names:
        value = params.get(param)
        if isinstance(value, list):
            params[param] = [
                build_architecture(spec, stage_models, source=f"{cls.name} stage {i}") for i, spec in enumerate(value)
            ]
    return params


#: built sub-architectures (`architecture_params`) are plain objects: checked by isinstance, not by a schema
_VALIDATE = pydantic.ConfigDict(arbitrary_types_allowed=True)


def _construct(cls: type[Technique], params: dict[str, Any], default_models: list[str], where: Any) -> Technique:
    signature = inspect.signature(cls.__init__)
    if "models" in signature.parameters and "models" not in params:
        params["models"] = list(default_models)
    if "model" in signature.parameters and "model" not in params and default_models:
        params["model"] = default_models[0]
    technique = cls.__new__(cls)
    try:
        pydantic.validate_call(config=_VALIDATE)(cls.__init__)(technique, **params)
        return technique
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise ConfigError(f"{where(field)}: parameter {field!r} of {cls.__name__}: {first['msg']}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where('')}: {cls.__name__}: {exc}") from None


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml") for p in resources.files("thinktank.presets").iterdir() if p.name.endswith(".yaml")
    )


def servable_presets(default_models: list[str], *, local: bool) -> tuple[list[Architecture], dict[str, list[str]]]:
    """Every preset that can be served with these models: (servable, {skipped preset: the packs it lacks}).

    With a local backend a preset is skipped when it names a model pack that is neither one of the defaults nor
    pulled (pulling is an explicit step); with a remote backend every preset is served, the server knows its models.
    """
    from thinktank.models.packs import PACKS

    servable: list[Architecture] = []
    skipped: dict[str, list[str]] = {}
    for preset in preset_names():
        candidate = load_architecture(preset, default_models)
        missing = [m for m in candidate.models if local and m in PACKS and m not in default_models and not PACKS[m].is_pulled]
        if missing:
            skipped[preset] = missing
        else:
            servable.append(candidate)
    return servable, skipped


def load_architecture(name_or_path: str, default_models: list[str]) -> Architecture:
    """A preset name (`thinktank/presets/*.yaml`) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"architecture file {path} does not exist")
        text, source = path.read_text(), str(path)
    else:
        preset = resources.files("thinktank.presets") / f"{name_or_path}.yaml"
        if not preset.is_file():
            raise ConfigError(
                f"unknown architecture {name_or_path!r}; presets: {', '.join(preset_names())} — or a path to a YAML file"
            )
        text, source = preset.read_text(), f"preset {name_or_path}"
    spec, lines = yaml_with_lines(text, source)
    return build_architecture(spec, default_models, source=source, lines=lines)
