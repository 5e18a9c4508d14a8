"""Run untrusted SQL read-only on synthesised databases, and grade it by test-suite accuracy.

Queries run in-process, in worker threads, not in a subprocess. Generated SQL cannot run code; what
it can do is write, touch files, burn CPU or eat memory, and SQLite has a per-connection guard for
each (sqlite.org/security.html, "defense against the dark arts"), all applied here:

* the file is opened ``mode=ro&immutable=1`` and an authorizer allows only SELECT, column reads,
  functions (not ``load_extension``) and recursive CTEs: ATTACH, PRAGMA, writes, DDL and transactions
  are refused while the statement is prepared, before anything runs;
* ``temp_store=MEMORY`` keeps sorts and temporary tables off the disk;
* a progress handler aborts the statement at the deadline;
* limits cap value size, SQL length, expression depth and attachments; fetching stops at a row and byte cap;
* ``PRAGMA hard_heap_limit`` caps SQLite's heap. SQLite has no per-connection memory limit, so this one is
  process-wide: set on first use, it can only ever be lowered, and ordinary use stays far below it.

A subprocess would add an OS-level kill for a runaway C loop, but every statement already stops at the
deadline, and starting Python for each query (tens of ms, times K databases, times every candidate)
would cost more than the query itself.

Example::

    verifier = SqlVerifier(k=5, timeout_s=2.0)
    verdict = await verifier.grade("SELECT count(*) FROM singer", gold_sql, schema_text)
"""

from __future__ import annotations

import asyncio
import math
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinktank.exceptions import VerificationError
from thinktank.verifiers.base import Verdict
from thinktank.verifiers.sql_schema import tokenize_sql
from thinktank.verifiers.sql_synth import synthesize

HEAP_LIMIT_BYTES = 512 << 20
_LIMITS = ((sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000), (sqlite3.SQLITE_LIMIT_SQL_LENGTH, 100_000),
           (sqlite3.SQLITE_LIMIT_ATTACHED, 0), (sqlite3.SQLITE_LIMIT_EXPR_DEPTH, 200),
           (sqlite3.SQLITE_LIMIT_COMPOUND_SELECT, 64), (sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 1000))  # fmt: skip
_ALLOWED = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE})
_BLOCKED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"})
_ACTIONS = (
    "ATTACH DETACH PRAGMA INSERT UPDATE DELETE TRANSACTION SAVEPOINT CREATE_TABLE CREATE_TEMP_TABLE CREATE_VIEW "
    "CREATE_TEMP_VIEW CREATE_INDEX CREATE_TEMP_INDEX CREATE_TRIGGER CREATE_TEMP_TRIGGER CREATE_VTABLE DROP_TABLE "
    "DROP_TEMP_TABLE DROP_VIEW DROP_TEMP_VIEW DROP_INDEX DROP_TEMP_INDEX DROP_TRIGGER DROP_TEMP_TRIGGER DROP_VTABLE "
    "ALTER_TABLE REINDEX ANALYZE FUNCTION"
)
_ACTION_NAMES = {getattr(sqlite3, "SQLITE_" + name): name.lower().replace("_", " ") for name in _ACTIONS.split()}


@dataclass(frozen=True)
class SqlResult:
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    error: str | None = None  # the database's own message, or why we stopped the query
    error_kind: str | None = None  # "syntax" | "denied" | "timeout" | "too_large" | "error"
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _harden(conn: sqlite3.Connection, denied: list[str]) -> None:
    conn.execute(f"PRAGMA hard_heap_limit={HEAP_LIMIT_BYTES}")
    conn.execute("PRAGMA temp_store=MEMORY")
    for limit, value in _LIMITS:
        conn.setlimit(limit, value)

    def authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
        if action in _ALLOWED and not (action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _BLOCKED_FUNCTIONS):
            return sqlite3.SQLITE_OK
        denied.append(" ".join(filter(None, (_ACTION_NAMES.get(action, f"action {action}"), arg1 or arg2))))
        return sqlite3.SQLITE_DENY

    conn.set_authorizer(authorize)


def _classify(exc: BaseException, denied: list[str], timed_out: bool, timeout_s: float) -> tuple[str, str]:
    """The one place that turns a sqlite failure into (kind, readable message)."""
    message = str(exc) or type(exc).__name__
    if denied:
        return "denied", f"not allowed: {', '.join(dict.fromkeys(denied))} (only reading queries may run; {message})"
    if timed_out and "interrupt" in message:
        return "timeout", f"timed out after {timeout_s:g}s"
    if isinstance(exc, MemoryError) or "too big" in message:
        return "too_large", f"out of memory or value too large: {message}"
    if re.search(r"syntax error|incomplete input|unrecognized token|one statement at a time", message):
        return "syntax", message
    return "error", message


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes) else 8


def run_query(db_path: Path, sql: str, *, timeout_s: float = 2.0, max_rows: int = 10_000, max_bytes: int = 16 << 20) -> SqlResult:
    """Execute one statement under the guards above. Blocking; returns errors inside the result."""
    start = time.monotonic()
    deadline = start + timeout_s
    if not sql.strip().rstrip(";").strip():
        return SqlResult(error="empty query", error_kind="syntax")
    try:
        conn = sqlite3.connect(f"{Path(db_path).resolve().as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise VerificationError(f"cannot open database {db_path}: {exc}") from exc
    denied: list[str] = []
    try:
        _harden(conn, denied)
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
        rows: list[tuple[Any, ...]] = []
        size = 0
        try:
            cursor = conn.execute(sql)
            if cursor.description is None:
                return SqlResult(error="not a query: it returns no result set", error_kind="error")
            while batch := cursor.fetchmany(256):
                rows.extend(batch)
                size += sum(_size(v) for row in batch for v in row)
                if len(rows) > max_rows or size > max_bytes:
                    limit = f"more than {max_rows} rows" if len(rows) > max_rows else f"more than {max_bytes} bytes"
                    return SqlResult(
                        error=f"result too large: {limit}", error_kind="too_large", duration_s=time.monotonic() - start
                    )
        except (sqlite3.Error, sqlite3.Warning, MemoryError) as exc:
            kind, message = _classify(exc, denied, time.monotonic() > deadline, timeout_s)
            return SqlResult(error=message, error_kind=kind, duration_s=time.monotonic() - start)
        columns = tuple(d[0] for d in cursor.description)
        return SqlResult(columns, tuple(rows), duration_s=time.monotonic() - start)
    finally:
        conn.close()


# --- comparing results ------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def normalize(value: Any) -> Any:
    """1, 1.0 and '1' compare equal; floats compare to 12 significant digits."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        value = float(value) if any(ch in value for ch in ".eE") else int(value)
    if isinstance(value, float) and math.isfinite(value):
        value = float(f"{value:.12g}")
        return int(value) if value.is_integer() and abs(value) < 2**63 else value
    if isinstance(value, bytes):
        return ("blob", value.hex())
    return value


def _permutations(expected: list[tuple], got: list[tuple], width: int) -> Iterator[tuple[int, ...]]:
    """Column orders of `got` whose columns hold the same values as `expected`'s (column order is ignored)."""
    exp_cols = [Counter(r[j] for r in expected) for j in range(width)]
    got_cols = [Counter(r[j] for r in got) for j in range(width)]
    options = [[c for c in range(width) if got_cols[c] == exp_cols[j]] for j in range(width)]

    def extend(prefix: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        if len(prefix) == width:
            yield prefix
            return
        for c in options[len(prefix)]:
            if c not in prefix:
                yield from extend((*prefix, c))

    yield from (p for _, p in zip(range(200), extend(()), strict=False))


def result_difference(expected: SqlResult, got: SqlResult, *, ordered: bool) -> str | None:
    """None when `got` returns the same rows as `expected` (as a multiset, or in order), else what differs."""
    if got.error:
        return got.error
    exp = [tuple(normalize(v) for v in row) for row in expected.rows]
    out = [tuple(normalize(v) for v in row) for row in got.rows]
    if len(got.columns) != len(expected.columns):
        return f"returns {len(got.columns)} columns, expected {len(expected.columns)}"
    if len(out) != len(exp):
        return f"returns {len(out)} rows, expected {len(exp)}"
    for perm in _permutations(exp, out, len(expected.columns)):
        permuted = [tuple(row[c] for c in perm) for row in out]
        if (permuted == exp) if ordered else (Counter(permuted) == Counter(exp)):
            return None
    if ordered and Counter(out) == Counter(exp):
        return "same rows in a different order"
    lacking, extra = Counter(exp) - Counter(out), Counter(out) - Counter(exp)
    if not lacking:
        return "rows differ"
    return f"expected row {next(iter(lacking))!r} is missing (instead got {next(iter(extra))!r})"


def has_top_level_order_by(sql: str) -> bool:
    """Whether row order is part of the answer: an ORDER BY outside any parentheses."""
    toks = tokenize_sql(sql)
    depth = 0
    for i, (kind, text) in enumerate(toks):
        depth += (text == "(") - (text == ")")
        if depth == 0 and kind == "name" and text.upper() == "ORDER" and i + 1 < len(toks) and toks[i + 1][1].upper() == "BY":
            return True
    return False


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_STATEMENT = re.compile(r"(?:^[ \t]*(?i:select|with)\b|\bSELECT\b).*?(?:;|\n[ \t]*\n|```|\Z)", re.DOTALL | re.MULTILINE)


def extract_sql(reply: str) -> str | None:
    """The query in a model reply: a ```sql block, else a fenced SELECT, else the first SELECT statement."""
    blocks = _FENCE.findall(reply)
    body = next((b for lang, b in blocks if lang.lower() in ("sql", "sqlite")), None)
    body = body or next((b for _, b in blocks if re.match(r"\s*(?i:select|with)\b", b)), None)
    if body is None and (m := _STATEMENT.search(reply)):
        body = m.group().removesuffix("```")
    sql = (body or "").strip().rstrip(";").strip()
    return sql or None


@dataclass(frozen=True)
class GoldQuery:
    """What `SqlVerifier.check` grades against: the reference query and the schema its databases are made from."""

    sql: str
    schema: str


class SqlVerifier:
    """Test-suite accuracy: a candidate passes when it matches the gold query's result on all K databases."""

    def __init__(
        self,
        k: int = 5,
        timeout_s: float = 2.0,
        *,
        seed: int = 0,
        max_rows: int = 10_000,
        concurrency: int = 4,
        db_dir: Path | None = None,
    ) -> None:
        self.k, self.timeout_s, self.seed, self.max_rows, self.db_dir = k, timeout_s, seed, max_rows, db_dir
        self._slots = asyncio.Semaphore(concurrency)

    def databases(self, schema_text: str, hint_sqls: Sequence[str] = ()) -> list[Path]:
        return synthesize(schema_text, k=self.k, seed=self.seed, hint_sqls=hint_sqls, root=self.db_dir)

    def _run(self, path: Path, sql: str) -> SqlResult:
        return run_query(path, sql, timeout_s=self.timeout_s, max_rows=self.max_rows)

    async def execute(self, sql: str, schema_text: str, db_index: int = 0, hint_sqls: Sequence[str] | None = None) -> SqlResult:
        """Run `sql` on database `db_index`, shaped by the literals of `hint_sqls` (default: `sql` itself).

        Pass the same `hint_sqls` (e.g. all candidates) when results of several queries are compared.
        """
        if not 0 <= db_index < self.k:
            raise ValueError(f"db_index must be in [0, {self.k})")

        def work() -> SqlResult:
            return self._run(self.databases(schema_text, [sql] if hint_sqls is None else hint_sqls)[db_index], sql)

        async with self._slots:
            return await asyncio.to_thread(work)

    async def check(self, answer: str, reference: GoldQuery) -> Verdict:
        """The `Verifier` method: `grade` against the reference query."""
        return await self.grade(answer, reference.sql, reference.schema)

    async def grade(self, candidate_sql: str, gold_sql: str, schema_text: str) -> Verdict:
        async with self._slots:
            return await asyncio.to_thread(self._grade, candidate_sql, gold_sql, schema_text)

    def _grade(self, candidate_sql: str, gold_sql: str, schema_text: str) -> Verdict:
        start = time.monotonic()
        ordered = has_top_level_order_by(gold_sql)
        details: dict[str, Any] = {"databases": self.k, "ordered": ordered, "gold_rows": [], "candidate_rows": []}
        matched, first_difference = 0, None
        for i, path in enumerate(self.databases(schema_text, [gold_sql])):
            gold = self._run(path, gold_sql)
            if not gold.ok:
                raise VerificationError(f"gold SQL fails on synthesised database {i}: {gold.error}")
            got = self._run(path, candidate_sql)
            details["gold_rows"].append(len(gold.rows))
            details["candidate_rows"].append(len(got.rows))
            if not got.ok:
                details.update(matched=matched, error_kind=got.error_kind, error=got.error)
                return Verdict(False, f"{got.error_kind}: {got.error}", matched / self.k, details, time.monotonic() - start)
            difference = result_difference(gold, got, ordered=ordered)
            matched += difference is None
            first_difference = first_difference or (difference and f"database {i}: {difference}")
        details["matched"] = matched
        reason = f"matched gold on {matched}/{self.k} databases"
        if first_difference:
            reason = f"{reason}; first difference on {first_difference}"
        return Verdict(matched == self.k, reason, matched / self.k, details, time.monotonic() - start)
