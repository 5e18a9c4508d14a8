"""How thinktank talks to a PostgreSQL server it shares with other processes (the response cache; the run store next).

One place decides what every shared store needs, as `_sqlite.py` does for the files:
- the server is named by a URL (`postgresql://user@host:port/db`), shown in every error with its password masked;
- a small pool of psycopg 3 async connections: a connection is handed out only while it is idle and healthy, one
  that failed or was interrupted mid-query is closed instead of being reused, and a new one is opened with a short
  connect timeout, so a server that is down is reported within seconds instead of after a pool's wait;
- each component's tables carry a schema version in `thinktank_schema`, checked (and created) under an advisory
  lock so that concurrent first opens do not race, and a database written by another version is refused;
- every psycopg error is translated once into the store's own error (`CacheError`, `StoreError`), naming the URL.

psycopg is imported only here and only when a postgresql:// URL is used (`SyncConnection` serves the run store,
whose API is synchronous): `pip install 'thinktank[postgres]'`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import psycopg

SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 5
SCHEMA_LOCK = 0x7468696E6B74616E  # "thinktan": serialises schema creation across processes
_SCHEMA_TABLE = "CREATE TABLE IF NOT EXISTS thinktank_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
_SCHEMA_ROW = "SELECT version FROM thinktank_schema WHERE component = %s"
_SCHEMA_STAMP = "INSERT INTO thinktank_schema VALUES (%s, %s)"


def is_postgres_url(location: str) -> bool:
    return location.startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL as errors show it: any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _import_psycopg(error: Callable[[str], Exception]) -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise error(f"a postgresql:// URL needs psycopg 3: pip install 'thinktank[postgres]' ({exc})") from exc
    return psycopg


class Connections:
    """A bounded pool of async connections to one server; `async with pool.connection() as conn` (autocommit)."""

    def __init__(self, url: str, *, error: Callable[[str], Exception], what: str, max_size: int = 16) -> None:
        self.url = url
        self.shown = redact(url)
        self.what = what  # "shared response cache": the start of every error message
        self._error = error
        self._psycopg = _import_psycopg(error)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._limit = asyncio.Semaphore(max_size)
        self._closed = False

    def fail(self, doing: str, exc: BaseException) -> Exception:
        """The store's error for `exc` (a psycopg error) met while `doing`."""
        if isinstance(exc, self._psycopg.OperationalError):
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return self._error(
                f"{self.what} {self.shown} is unreachable ({doing}: {detail}); start the server or use another"
                " location — nothing written so far is lost, and a re-run resumes"
            )
        return self._error(f"{self.what} {self.shown} failed ({doing}): {type(exc).__name__}: {exc}")

    @contextlib.contextmanager
    def translating(self, doing: str) -> Any:
        """Raise psycopg errors inside the block as the store's error."""
        try:
            yield
        except self._psycopg.Error as exc:
            raise self.fail(doing, exc) from exc

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self.url:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        with self.translating("connecting"):
            conn: psycopg.AsyncConnection[Any] = await self._psycopg.AsyncConnection.connect(self.url, **kwargs)
        return conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """An idle connection for the block; returned to the pool only if it ends idle and open."""
        if self._closed:
            raise self._error(f"{self.what} {self.shown} is closed")
        async with self._limit:
            conn = self._idle.pop() if self._idle else await self._connect()
            healthy = False
            try:
                yield conn
                healthy = not conn.closed and conn.info.transaction_status == self._psycopg.pq.TransactionStatus.IDLE
            except BaseException as exc:
                if isinstance(exc.__cause__ or exc, self._psycopg.OperationalError):
                    # the server went away (or restarted): the idle connections are as dead as this one, so the next
                    # caller connects afresh instead of failing once per stale connection
                    idle, self._idle = self._idle, []
                    for stale in idle:
                        await _close_quietly(stale)
                raise
            finally:
                if healthy and not self._closed:
                    self._idle.append(conn)
                else:
                    await _close_quietly(conn)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close_quietly(conn)

    async def ensure_schema(self, component: str, version: int, ddl: list[str], hint: str) -> None:
        """Create `component`'s tables if this database has none; refuse a database stamped with another version."""
        async with self.connection() as conn:
            with self.translating("checking the schema"):
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    await conn.execute(_SCHEMA_TABLE)
                    row = await _stamp(conn, component)
                    if row is None:
                        for statement in ddl:
                            await conn.execute(statement)
                        await conn.execute(_SCHEMA_STAMP, (component, version))
            self.check_version(row, component, version, hint)

    async def stamped_version(self, component: str) -> int | None:
        """The schema version `component`'s tables carry in this database, None if it has none yet; it only reads
        (`thinktank doctor`): a server that is down raises the store's error, as on first use."""
        async with self.connection() as conn:
            with self.translating("reading the schema version"):
                try:
                    row = await _stamp(conn, component)
                except self._psycopg.errors.UndefinedTable:  # no thinktank component was ever opened here
                    return None
        return None if row is None else int(row[0])

    def check_version(self, row: Any, component: str, version: int, hint: str) -> None:
        if row is not None and row[0] != version:
            raise self._error(
                f"{self.what} {self.shown} has schema version {row[0]} ({component}), this thinktank uses {version}; {hint}"
            )


class SyncConnection:
    """One blocking connection (autocommit) for a store whose API is synchronous (the run store), with the same
    error translation and schema check as `Connections`."""

    def __init__(self, url: str, *, error: Callable[[str], Exception], what: str) -> None:
        self._async = Connections(url, error=error, what=what)  # its messages and schema check, not its pool
        self.shown, self.what, self.translating, self.fail = self._async.shown, what, self._async.translating, self._async.fail
        kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in url:
            kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
        with self.translating("connecting"):
            self.conn: psycopg.Connection[Any] = self._async._psycopg.connect(url, **kwargs)

    def ensure_schema(self, component: str, version: int, ddl: list[str], hint: str) -> None:
        with self.translating("checking the schema"), self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            self.conn.execute(_SCHEMA_TABLE)
            row = self.conn.execute(_SCHEMA_ROW, (component,)).fetchone()
            if row is None:
                for statement in ddl:
                    self.conn.execute(statement)
                self.conn.execute(_SCHEMA_STAMP, (component, version))
        self._async.check_version(row, component, version, hint)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


async def _stamp(conn: Any, component: str) -> Any:
    """`component`'s row of thinktank_schema, (version,), or None."""
    cur = await conn.execute(_SCHEMA_ROW, (component,))
    return await cur.fetchone()


async def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
