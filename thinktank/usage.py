"""Usage accounting: one mergeable counter that rolls up per call, node, query and run.

Cache hits are kept apart: what a hit would have cost is *saved*, not spent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens the server served from its prefix cache
    calls: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0  # summed call latency (not wall time: calls overlap)
    cache_hits: int = 0
    saved_tokens: int = 0  # tokens a cache hit did not have to spend again
    saved_usd: float = 0.0
    cancelled_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __iadd__(self, other: Usage) -> Usage:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def to_dict(self) -> dict[str, float | int]:
        data: dict[str, float | int] = asdict(self)
        data["total_tokens"] = self.total_tokens
        return data

    @classmethod
    def from_dict(cls, data: dict[str, float | int]) -> Usage:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]

    def summary(self) -> str:
        text = (
            f"{self.calls} call(s), {self.prompt_tokens} prompt + {self.completion_tokens}"
            f" completion tokens, {self.latency_s:.2f}s in calls"
        )
        if self.cost_usd:
            text += f", ${self.cost_usd:.6f}"
        if self.cache_hits:
            text += f", {self.cache_hits} cache hit(s) saved {self.saved_tokens} tokens"
            if self.saved_usd:
                text += f" / ${self.saved_usd:.6f}"
        return text


class Price(BaseModel):
    """USD per million tokens."""

    prompt_per_mtok: float = Field(0.0, ge=0)
    completion_per_mtok: float = Field(0.0, ge=0)


class PriceTable(BaseModel):
    """Prices by model name; unknown models cost $0 (local models are free unless priced)."""

    prices: dict[str, Price] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """Read `{model: {prompt_per_mtok: .., completion_per_mtok: ..}}` from a YAML or JSON file."""
        import yaml

        from thinktank.exceptions import ConfigError

        try:
            data = yaml.safe_load(Path(path).read_text())
            return cls(prices=data or {})
        except OSError as exc:
            raise ConfigError(f"cannot read price table {path}: {exc}") from exc
        except (yaml.YAMLError, ValidationError) as exc:
            raise ConfigError(f"price table {path} is malformed: {exc}") from exc

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.prices.get(model)
        if price is None:
            return 0.0
        return (prompt_tokens * price.prompt_per_mtok + completion_tokens * price.completion_per_mtok) / 1e6
