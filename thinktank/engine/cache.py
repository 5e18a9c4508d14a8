"""The persistent response cache, one row per sample: SQLite by default, PostgreSQL to share it.

The key covers everything that changes the distribution of one sample: model, messages,
sampling parameters and the sample's index (so n=8 after n=4 reuses four and makes four).
Exact caching is the right default for code, SQL and math (vCache).

`SampleCache` is what the engine asks of a cache: batched `lookup` and `store`, and `lead`,
which makes the caller the one that computes some keys. `ResponseCache` is the SQLite file
(WAL mode; its reads and writes are single-row and fast enough to do inline on the event
loop, so its async methods never suspend); it serves one process, whose engine coalesces
identical misses itself. `PostgresCache` (`pg_cache.py`) is shared by processes and
machines, and its `lead` coalesces identical misses across all of them.

    cache = await thinktank.runtime.open_cache("postgresql://thinktank@db:5432/thinktank")   # or a file path
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thinktank._sqlite import open_sqlite
from thinktank.exceptions import CacheError
from thinktank.types import GenerationRequest

SCHEMA_VERSION = 1
#: what a row holds of a sample, in `CachedSample`'s field order; a row also has its key, its model and when it was
#: written. Both backends' tables, reads and writes are built from this (`responses_table`, `sample_row`, `sample_of`)
SAMPLE_COLUMNS = ("text", "finish_reason", "prompt_tokens", "completion_tokens", "cost_usd")
#: the columns a write gives, in `sample_row`'s order (created_at is the backend's own)
ROW_COLUMNS = ("key", "model", *SAMPLE_COLUMNS)


def responses_table(table: str, *, real: str, created_at: str, if_not_exists: bool = False) -> str:
    """The CREATE TABLE of one sample per row: the same columns in SQLite and PostgreSQL, with the backend's type for
    a float (`real`) and its definition of `created_at`."""
    types = dict.fromkeys(ROW_COLUMNS, "TEXT NOT NULL") | {"key": "TEXT PRIMARY KEY", "cost_usd": f"{real} NOT NULL"}
    types |= dict.fromkeys(("prompt_tokens", "completion_tokens"), "INTEGER NOT NULL")
    columns = ",\n    ".join([*(f"{name} {types[name]}" for name in ROW_COLUMNS), f"created_at {created_at}"])
    return f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{table} (\n    {columns}\n)"


_SCHEMA = responses_table("responses", real="REAL", created_at="REAL NOT NULL", if_not_exists=True)
_INSERT = (
    f"INSERT OR REPLACE INTO responses ({', '.join(ROW_COLUMNS)}, created_at) VALUES ({', '.join('?' * (len(ROW_COLUMNS) + 1))})"
)


def cache_key(request: GenerationRequest, sample_index: int) -> str:
    material = {
        "model": request.model,
        "messages": request.messages,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "stop": list(request.stop),
        # A seeded sample is identified by its effective seed (seed + index), stored as (0, seed + index): so
        # sample 4 of a seed-0 request and sample 0 of a seed-4 request (adaptive's second wave) are one entry,
        # and keys written before this rule (seed-0 requests) still match.
        "seed": None if request.seed is None else 0,
        "extra_body": request.extra_body,
        "sample_index": sample_index if request.seed is None else request.seed + sample_index,
    }
    # tool use and structured output change what a sample is; absent, keys stay as they were before these fields
    for name in ("tools", "tool_choice", "response_format"):
        if getattr(request, name) is not None:
            material[name] = getattr(request, name)
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class CachedSample:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


def sample_row(key: str, model: str, sample: CachedSample) -> tuple[str, str, str, str, int, int, float]:
    """A sample as the values of `ROW_COLUMNS`."""
    return (key, model, sample.text, sample.finish_reason, sample.prompt_tokens, sample.completion_tokens, sample.cost_usd)


def sample_of(row: Sequence[Any]) -> CachedSample:
    """A sample from the values of `SAMPLE_COLUMNS` (a driver may give Decimal or int for a float column)."""
    text, finish_reason, prompt_tokens, completion_tokens, cost_usd = row
    return CachedSample(str(text), str(finish_reason), int(prompt_tokens), int(completion_tokens), float(cost_usd))


@dataclass
class Lead:
    """The keys a caller now computes alone: `found` holds those another caller finished while this one waited
    for them; write the rest with `store`, inside the `lead` block, so waiters find them when it ends."""

    found: dict[str, CachedSample]
    store: Callable[[str, Mapping[str, CachedSample]], Awaitable[None]]
    waited: bool = field(default=False)  # another process held some of the keys when this one asked


class SampleCache(ABC):
    """What the engine asks of a response cache. `location` names it in messages (a path, or a masked URL)."""

    location: str

    @abstractmethod
    async def lookup(self, keys: Sequence[str]) -> dict[str, CachedSample]:
        """The cached samples among `keys`."""

    @abstractmethod
    async def store(self, model: str, samples: Mapping[str, CachedSample]) -> None:
        """Write samples (replacing any with the same key)."""

    @contextlib.asynccontextmanager
    async def lead(self, keys: Sequence[str]) -> AsyncIterator[Lead]:
        """Make the caller the only one computing `keys` until the block ends (default: nobody else shares this
        cache, so nothing to wait for). An error inside the block writes nothing: waiters then compute themselves."""
        yield Lead({}, self.store)

    @abstractmethod
    async def count(self) -> int:
        """How many samples are cached."""

    @abstractmethod
    async def purge(self) -> int:
        """Delete every cached sample; return how many there were."""

    @abstractmethod
    async def aclose(self) -> None: ...


class ResponseCache(SampleCache):
    """`ResponseCache(path)`, the SQLite file; a corrupt or foreign file raises `CacheError` naming the path."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._db = open_sqlite(
            self.path,
            _SCHEMA,
            error=CacheError,
            what="response cache",
            hint="delete the file or run `thinktank cache clear` (or pass --no-cache)",
            user_version=SCHEMA_VERSION,
            check_same_thread=False,
        )
        self._db.execute("PRAGMA synchronous=NORMAL")

    def get(self, key: str) -> CachedSample | None:
        try:
            row = self._db.execute(f"SELECT {', '.join(SAMPLE_COLUMNS)} FROM responses WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"response cache {self.path} failed on read: {exc}") from exc
        return sample_of(row) if row else None

    def put(self, key: str, model: str, sample: CachedSample) -> None:
        try:
            self._db.execute(_INSERT, (*sample_row(key, model, sample), time.time()))
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"response cache {self.path} failed on write: {exc}") from exc

    async def lookup(self, keys: Sequence[str]) -> dict[str, CachedSample]:
        found = {}
        for key in dict.fromkeys(keys):
            sample = self.get(key)
            if sample is not None:
                found[key] = sample
        return found

    async def store(self, model: str, samples: Mapping[str, CachedSample]) -> None:
        for key, sample in samples.items():
            self.put(key, model, sample)

    async def count(self) -> int:
        return len(self)

    async def purge(self) -> int:
        return self.clear()

    async def aclose(self) -> None:
        self.close()

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(count)

    def clear(self) -> int:
        removed = len(self)
        self._db.execute("DELETE FROM responses")
        return removed

    def close(self) -> None:
        self._db.close()
