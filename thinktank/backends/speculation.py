"""Speculative decoding for the embedded llama-server: which guesses a server verifies, and how it is switched off.

    spec = SpeculationSettings(enabled=True).for_model("qwen2.5-coder-1.5b-instruct")   # off unless asked for
    # Speculation(draft='qwen2.5-coder-0.5b-instruct', ngram='ngram-mod', …)
    LlamaServer("qwen2.5-coder-1.5b-instruct", speculation=spec)

Two sources of guesses, both lossless: the target model evaluates a guessed run of tokens in one batch and
keeps the longest prefix that matches what it samples itself, token by token, so its output is the one it
would produce alone (`common_sampler_sample_and_accept_n`: at temperature > 0 every token is still drawn
from the target's distribution with the same sampler; a guess only decides how many positions one
forward pass covers). What a guess costs is the batch positions past the first wrong one.

- a draft model (`--spec-draft-model`, type `draft-simple`): a smaller pack of the same tokenizer family
  (`ModelPack.draft`) decodes a few tokens ahead; it pays when the target is several times larger.
- n-gram lookup (`ngram-*` types): the continuation of the last n tokens' previous occurrence in the same
  slot's context is proposed. It proposes nothing unless the output is repeating its context, so it pays
  for calls that copy their input (repair, fuse, refine) and costs little elsewhere.

llama-server tries the n-gram source first and falls back to the draft. Per-request speculation fields
(`speculative.type`, `speculative.n_max`) are compiled out of this build's server (`#if 0` in
`tools/server/server-schema.cpp`), so the choice is per server: every call to a server speculates the same
way, and an n-gram lookup that finds nothing adds no work to a call that does not copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from thinktank.models.packs import PACKS, model_label

NgramType = Literal["ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache"]
NGRAM_TYPES: tuple[NgramType, ...] = ("ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache")

#: the n-gram source every embedded server uses unless told otherwise (benchmarks/bench_speculative.py)
DEFAULT_NGRAM: NgramType | None = "ngram-mod"
#: tokens the draft model guesses ahead per step (llama-server's own default is 3)
DEFAULT_DRAFT_MAX = 8


@dataclass(frozen=True)
class Speculation:
    """How one embedded server speculates; `Speculation()` is off."""

    draft: str | None = None  # a pack name or .gguf path whose vocabulary matches the target's
    ngram: NgramType | None = None
    draft_max: int = DEFAULT_DRAFT_MAX
    draft_min: int = 0
    draft_p_min: float = 0.0  # stop drafting once the draft's top token is less likely than this

    def __post_init__(self) -> None:
        if self.ngram is not None and self.ngram not in NGRAM_TYPES:
            raise ValueError(f"unknown n-gram speculation {self.ngram!r}; one of {', '.join(NGRAM_TYPES)}")
        if not 0 <= self.draft_min <= self.draft_max or self.draft_max < 1:
            raise ValueError(f"need 0 <= draft_min <= draft_max and draft_max >= 1, got {self.draft_min}, {self.draft_max}")
        if not 0.0 <= self.draft_p_min <= 1.0:
            raise ValueError(f"draft_p_min must be within [0, 1], got {self.draft_p_min}")

    @property
    def enabled(self) -> bool:
        return self.draft is not None or self.ngram is not None

    def without_draft(self) -> Speculation:
        return replace(self, draft=None)

    def args(self, draft_path: Path | None) -> list[str]:
        """llama-server's flags for this speculation, given the resolved draft file (None: no draft)."""
        types = [*([self.ngram] if self.ngram else []), *(["draft-simple"] if draft_path is not None else [])]
        if not types:
            return []
        args = ["--spec-type", ",".join(types)]
        if draft_path is not None:
            args += [
                "--spec-draft-model", str(draft_path),
                "--spec-draft-n-max", str(self.draft_max),
                "--spec-draft-n-min", str(self.draft_min),
                "--spec-draft-p-min", f"{self.draft_p_min:g}",
            ]  # fmt: skip
        return args


@dataclass(frozen=True)
class SpeculationSettings:
    """One run's choice, per model: off by default (on 2 cores it did not pay: docs/benchmarks.md); `enabled=True`
    (`--speculative`) turns it on for every model, `off_for` off again for the models named (`--no-speculative-for`),
    and `drafts` names a model's draft (None: no draft), overriding its pack's `draft`."""

    enabled: bool = False
    off_for: frozenset[str] = frozenset()
    drafts: Mapping[str, str | None] = field(default_factory=dict)
    ngram: NgramType | None = DEFAULT_NGRAM

    def for_model(self, ref: str) -> Speculation:
        label = model_label(ref)
        if not self.enabled or ref in self.off_for or label in self.off_for:
            return Speculation()
        if ref in self.drafts or label in self.drafts:
            draft = self.drafts[ref] if ref in self.drafts else self.drafts[label]
        else:
            draft = PACKS[ref].draft if ref in PACKS else None
        if draft is not None and model_label(draft) == label:
            draft = None  # a model is no draft for itself
        return Speculation(draft=draft, ngram=self.ngram)

    def draft_packs(self, refs: list[str]) -> list[str]:
        """The packs these models' servers draft with (to pull them before any server starts)."""
        drafts = (self.for_model(ref).draft for ref in refs)
        return list(dict.fromkeys(d for d in drafts if d is not None and d in PACKS))
