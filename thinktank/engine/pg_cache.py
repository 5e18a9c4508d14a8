"""The response cache on a PostgreSQL server, shared by every process and machine that names the same URL.

Same rows as the SQLite cache (one per sample, keyed by `cache_key`). What sharing adds is single flight across
processes: `lead(keys)` opens a transaction and takes a transaction-scoped advisory lock per key
(`pg_advisory_xact_lock` on the key's first 64 bits), in sorted order so two leads never deadlock, then re-reads
the keys. A second process asking for the same uncached sample blocks on the lock while the first computes it,
then finds the row the first one wrote in that same transaction: one backend call for all of them. If the leader
fails or dies, its transaction rolls back and the server releases its locks, so a waiter computes the sample
itself; nothing half-written is ever visible.

    cache = await PostgresCache.open("postgresql://thinktank@db.internal:5432/thinktank")
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from thinktank._postgres import Connections
from thinktank.engine.cache import (
    ROW_COLUMNS,
    SAMPLE_COLUMNS,
    CachedSample,
    Lead,
    SampleCache,
    responses_table,
    sample_of,
    sample_row,
)
from thinktank.exceptions import CacheError

SCHEMA_VERSION = 1
COMPONENT = "response_cache"
_DDL = [responses_table("thinktank_responses", real="DOUBLE PRECISION", created_at="TIMESTAMPTZ NOT NULL DEFAULT now()")]
_UPSERT = (
    f"INSERT INTO thinktank_responses ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join(['%s'] * len(ROW_COLUMNS))})"
    f" ON CONFLICT (key) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in ROW_COLUMNS[1:])}, created_at = now()"
)
_HINT = "point --cache at another database, or drop its thinktank_* tables (`thinktank cache clear` keeps the schema)"


def lock_id(key: str) -> int:
    """The advisory-lock id of a cache key (a sha256 hex digest): its first 64 bits as a signed bigint."""
    value = int(key[:16], 16)
    return value - (1 << 64) if value >= 1 << 63 else value


class PostgresCache(SampleCache):
    """`await PostgresCache.open(url)`: a server that is down, or a database of another schema version, raises
    `CacheError` naming the URL (password masked)."""

    def __init__(self, url: str, *, max_connections: int = 16) -> None:
        self._pool = Connections(url, error=CacheError, what="shared response cache", max_size=max_connections)
        self.location = self._pool.shown

    @classmethod
    async def open(cls, url: str, *, max_connections: int = 16) -> PostgresCache:
        cache = cls(url, max_connections=max_connections)
        try:
            await cache._pool.ensure_schema(COMPONENT, SCHEMA_VERSION, _DDL, _HINT)
        except BaseException:
            await cache.aclose()
            raise
        return cache

    async def lookup(self, keys: Sequence[str]) -> dict[str, CachedSample]:
        if not keys:
            return {}
        async with self._pool.connection() as conn:
            return await _select(self._pool, conn, keys)

    async def store(self, model: str, samples: Mapping[str, CachedSample]) -> None:
        if not samples:
            return
        async with self._pool.connection() as conn:
            with self._pool.translating("writing"):
                async with conn.transaction():
                    await _upsert(conn, model, samples)

    @contextlib.asynccontextmanager
    async def lead(self, keys: Sequence[str]) -> AsyncIterator[Lead]:
        async with self._pool.connection() as conn:
            with self._pool.translating("coordinating a computation"):
                async with conn.transaction():
                    waited = False
                    for lock in sorted({lock_id(k) for k in keys}):
                        cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (lock,))
                        row = await cur.fetchone()
                        if not (row and row[0]):  # another process computes it: wait for its transaction to end
                            waited = True
                            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                    found = await _select(self._pool, conn, keys)

                    async def store(model: str, samples: Mapping[str, CachedSample]) -> None:
                        with self._pool.translating("writing"):
                            await _upsert(conn, model, samples)

                    yield Lead(found, store, waited)

    async def count(self) -> int:
        async with self._pool.connection() as conn:
            with self._pool.translating("counting"):
                cur = await conn.execute("SELECT COUNT(*) FROM thinktank_responses")
                row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def purge(self) -> int:
        async with self._pool.connection() as conn:
            with self._pool.translating("clearing"):
                cur = await conn.execute("DELETE FROM thinktank_responses")
        return cur.rowcount

    async def aclose(self) -> None:
        await self._pool.aclose()


async def _select(pool: Connections, conn: Any, keys: Sequence[str]) -> dict[str, CachedSample]:
    with pool.translating("reading"):
        cur = await conn.execute(
            f"SELECT key, {', '.join(SAMPLE_COLUMNS)} FROM thinktank_responses WHERE key = ANY(%s)", (list(keys),)
        )
        rows = await cur.fetchall()
    return {row[0]: sample_of(row[1:]) for row in rows}


async def _upsert(conn: Any, model: str, samples: Mapping[str, CachedSample]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            _UPSERT,
            [sample_row(key, model, sample) for key, sample in samples.items()],
        )
