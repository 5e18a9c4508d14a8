"""The results DB of one evaluation run: one SQLite file per run directory.

Each problem is written in a single transaction after it is graded, so a run killed at
any moment (Ctrl-C, SIGKILL, disk full) holds only whole rows, and re-running the same
command resumes with exactly the problems that are missing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from thinktank._sqlite import open_sqlite
from thinktank.exceptions import ConfigError, StoreError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    problem_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    reason TEXT NOT NULL,
    answer TEXT,
    n_candidates INTEGER NOT NULL,
    n_correct INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    cache_hits INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    budget_cut INTEGER NOT NULL,
    error TEXT,
    candidates TEXT NOT NULL,
    trace TEXT NOT NULL,
    finished_at REAL NOT NULL
);
"""


@dataclass
class ProblemRecord:
    problem_id: str
    position: int
    passed: bool
    reason: str
    answer: str | None
    n_candidates: int
    n_correct: int
    prompt_tokens: int
    completion_tokens: int
    calls: int
    cost_usd: float
    cache_hits: int
    latency_s: float
    budget_cut: bool
    error: str | None
    candidates: list[dict[str, Any]]
    trace: dict[str, Any]

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ResultStore(Protocol):
    """What the runner and `summarize` need of a run's store: `RunStore` (SQLite, one per run directory) or
    `PostgresRunStore` (`pg_store.py`, runs shared on a server)."""

    @property
    def run_dir(self) -> Any: ...

    def get_meta(self, key: str) -> Any: ...
    def set_meta(self, key: str, value: Any) -> None: ...
    def bind_config(self, config: dict[str, Any]) -> None: ...
    def done_ids(self) -> set[str]: ...
    def add(self, record: ProblemRecord) -> None: ...
    def add_wall_time(self, seconds: float) -> None: ...
    def records(self) -> list[ProblemRecord]: ...
    def close(self) -> None: ...


def refuse_other_config(run_dir: object, stored: dict[str, Any], config: dict[str, Any]) -> None:
    """A `ConfigError` naming what differs when `run_dir` already holds a run of another configuration."""
    if stored != config:
        changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
        raise ConfigError(
            f"{run_dir} holds a run with a different configuration ({', '.join(changed)} differ);"
            " pick another --run-dir to start a new run"
        )


class RunStore:
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "results.sqlite"
        self._db = open_sqlite(self.path, _SCHEMA, error=StoreError, what="results DB", hint="use a new --run-dir")
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise StoreError(
                f"results DB {self.path} was written by another thinktank version (schema {version}, this one reads"
                f" {SCHEMA_VERSION}); use a new --run-dir"
            )

    @classmethod
    def open_readonly(cls, run_dir: str | Path) -> RunStore:
        """A store that never writes (`thinktank ui`): no directory, schema or WAL file is created, so a run another
        user owns, or one on a read-only mount, can be read. Without a live writer (no -wal file) a WAL database
        cannot be opened read-only unless it is declared immutable, which it then is until the next writer."""
        store = cls.__new__(cls)
        store.run_dir = Path(run_dir)
        store.path = store.run_dir / "results.sqlite"
        if not store.path.is_file():
            raise StoreError(f"{store.path} does not exist")
        wal = store.path.with_name(store.path.name + "-wal")
        for query in ("mode=ro", "mode=ro&immutable=1"):
            try:
                store._db = sqlite3.connect(f"{store.path.resolve().as_uri()}?{query}", uri=True, isolation_level=None)
                (ok,) = store._db.execute("PRAGMA quick_check").fetchone()
                if ok != "ok":
                    raise sqlite3.DatabaseError(ok)
                version = store.get_meta("schema_version")
                break
            except sqlite3.OperationalError as exc:
                store._db.close()
                if query != "mode=ro" or wal.exists() or "readonly" not in str(exc):
                    raise StoreError(f"results DB {store.path} is unreadable ({exc})") from exc
            except sqlite3.DatabaseError as exc:
                store._db.close()
                raise StoreError(f"results DB {store.path} is unreadable ({exc})") from exc
        if version != SCHEMA_VERSION:
            store._db.close()
            raise StoreError(
                f"results DB {store.path} was written by another thinktank version (schema {version}, this one reads"
                f" {SCHEMA_VERSION})"
            )
        return store

    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def bind_config(self, config: dict[str, Any]) -> None:
        """Refuse to mix two different runs in one directory; remember the config otherwise."""
        stored = self.get_meta("config")
        if stored is None:
            self.set_meta("config", config)
            self.set_meta("created_at", time.time())
        else:
            refuse_other_config(self.run_dir, stored, config)

    def done_ids(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT problem_id FROM results")}

    def add(self, record: ProblemRecord) -> None:
        self.add_many([record])

    def add_many(self, records: list[ProblemRecord]) -> None:
        """Several rows in one transaction (all whole, or none): a driver receiving rows faster than one commit per
        row (`eval --ray`) commits what arrived meanwhile together, one fsync for all."""
        rows = [
            (
                record.problem_id,
                record.position,
                int(record.passed),
                record.reason,
                record.answer,
                record.n_candidates,
                record.n_correct,
                record.prompt_tokens,
                record.completion_tokens,
                record.calls,
                record.cost_usd,
                record.cache_hits,
                record.latency_s,
                int(record.budget_cut),
                record.error,
                json.dumps(record.candidates),
                json.dumps(record.trace),
                time.time(),
            )
            for record in records
        ]
        if not rows:
            return
        try:
            with self._db:  # one transaction: the rows are whole or absent
                self._db.execute("BEGIN")
                self._db.executemany(f"INSERT INTO results VALUES ({', '.join('?' * len(rows[0]))})", rows)
        except sqlite3.IntegrityError as exc:
            known, ids = self.done_ids(), [r.problem_id for r in records]
            again = sorted({i for i in ids if i in known or ids.count(i) > 1})
            raise StoreError(f"problem {', '.join(again)} is already recorded in {self.path}") from exc
        except sqlite3.OperationalError as exc:
            raise StoreError(f"could not write results to {self.path}: {exc} — nothing partial was kept") from exc

    def add_wall_time(self, seconds: float) -> None:
        self.set_meta("wall_s", float(self.get_meta("wall_s") or 0.0) + seconds)

    def records(self) -> list[ProblemRecord]:
        rows = self._db.execute("SELECT * FROM results ORDER BY position").fetchall()
        out = []
        for row in rows:
            (pid, pos, passed, reason, answer, n_cand, n_ok, pt, ct, calls, cost, hits, lat, cut, err, cands, trace, _) = row
            out.append(
                ProblemRecord(
                    pid,
                    pos,
                    bool(passed),
                    reason,
                    answer,
                    n_cand,
                    n_ok,
                    pt,
                    ct,
                    calls,
                    cost,
                    hits,
                    lat,
                    bool(cut),
                    err,
                    json.loads(cands),
                    json.loads(trace),
                )
            )
        return out

    def close(self) -> None:
        self._db.close()
