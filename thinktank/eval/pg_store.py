"""An evaluation run's results on a PostgreSQL server: `RunStore`'s interface, many runs in one database.

`thinktank eval --store postgresql://…` keeps the run named by its run directory's name there instead of in
`<run-dir>/results.sqlite`, so workers on several machines can write one run and a re-run anywhere resumes it.
A problem is one row, inserted once in its own statement (`ON CONFLICT DO NOTHING`: a second writer of the same
problem is told so, and nothing is counted twice); `bind_config` refuses a different run under the same name.

    store = PostgresRunStore("postgresql://tt@db/tt", "humaneval-qwen-single")
"""

from __future__ import annotations

import json
import time
from typing import Any

from thinktank._postgres import SyncConnection
from thinktank.eval.store import ProblemRecord, refuse_other_config
from thinktank.exceptions import ConfigError, StoreError

SCHEMA_VERSION = 1
COMPONENT = "run_store"
_DDL = [
    "CREATE TABLE thinktank_run_meta (run TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run, key))",
    """CREATE TABLE thinktank_results (
        run TEXT NOT NULL,
        problem_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        passed BOOLEAN NOT NULL,
        reason TEXT NOT NULL,
        answer TEXT,
        n_candidates INTEGER NOT NULL,
        n_correct INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        cache_hits INTEGER NOT NULL,
        latency_s DOUBLE PRECISION NOT NULL,
        budget_cut BOOLEAN NOT NULL,
        error TEXT,
        candidates TEXT NOT NULL,
        trace TEXT NOT NULL,
        finished_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run, problem_id)
    )""",
]
_FIELDS = (
    "problem_id, position, passed, reason, answer, n_candidates, n_correct, prompt_tokens, completion_tokens, calls,"
    " cost_usd, cache_hits, latency_s, budget_cut, error, candidates, trace"
)
_HINT = "point --store at another database"


class PostgresRunStore:
    """`PostgresRunStore(url, run)`; a server that is down, or a database of another schema version, raises
    `StoreError` naming the URL."""

    def __init__(self, url: str, run: str) -> None:
        if not run:
            raise ConfigError("a run in a shared store needs a name (the run directory's name)")
        self.run = run
        self._db = SyncConnection(url, error=StoreError, what="shared run store")
        try:
            self._db.ensure_schema(COMPONENT, SCHEMA_VERSION, _DDL, _HINT)
        except BaseException:
            self._db.close()
            raise
        self.run_dir = f"{self._db.shown}#{run}"  # what reports show as the run's location
        self.path = self.run_dir

    def _execute(self, doing: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
        with self._db.translating(doing):
            return self._db.conn.execute(sql, params)

    def get_meta(self, key: str) -> Any:
        row = self._execute("reading", "SELECT value FROM thinktank_run_meta WHERE run = %s AND key = %s", (self.run, key))
        found = row.fetchone()
        return json.loads(found[0]) if found else None

    def set_meta(self, key: str, value: Any) -> None:
        self._execute(
            "writing",
            "INSERT INTO thinktank_run_meta VALUES (%s, %s, %s) ON CONFLICT (run, key) DO UPDATE SET value = EXCLUDED.value",
            (self.run, key, json.dumps(value)),
        )

    def bind_config(self, config: dict[str, Any]) -> None:
        """Refuse to mix two different runs under one name; remember the config otherwise (first writer wins)."""
        self._execute(
            "writing",
            "INSERT INTO thinktank_run_meta VALUES (%s, 'config', %s), (%s, 'created_at', %s) ON CONFLICT DO NOTHING",
            (self.run, json.dumps(config), self.run, json.dumps(time.time())),
        )
        refuse_other_config(self.run_dir, self.get_meta("config"), config)

    def done_ids(self) -> set[str]:
        rows = self._execute("reading", "SELECT problem_id FROM thinktank_results WHERE run = %s", (self.run,))
        return {row[0] for row in rows.fetchall()}

    def add(self, record: ProblemRecord) -> None:
        values = (
            self.run, record.problem_id, record.position, record.passed, record.reason, record.answer,
            record.n_candidates, record.n_correct, record.prompt_tokens, record.completion_tokens, record.calls,
            record.cost_usd, record.cache_hits, record.latency_s, record.budget_cut, record.error,
            json.dumps(record.candidates), json.dumps(record.trace), time.time(),
        )  # fmt: skip
        try:
            with self._db.translating("writing a result"):
                cur = self._db.conn.execute(
                    f"INSERT INTO thinktank_results (run, {_FIELDS}, finished_at) VALUES"
                    f" ({', '.join(['%s'] * len(values))}) ON CONFLICT DO NOTHING",
                    values,
                )
        except StoreError as exc:
            raise StoreError(f"{exc} — nothing partial was kept") from exc.__cause__
        if cur.rowcount == 0:
            raise StoreError(f"problem {record.problem_id} is already recorded in {self.run_dir}")

    def add_wall_time(self, seconds: float) -> None:
        self._execute(
            "writing",
            "INSERT INTO thinktank_run_meta VALUES (%s, 'wall_s', %s) ON CONFLICT (run, key) DO UPDATE"
            " SET value = ((thinktank_run_meta.value)::float8 + (EXCLUDED.value)::float8)::text",
            (self.run, json.dumps(float(seconds))),
        )

    def records(self) -> list[ProblemRecord]:
        rows = self._execute(
            "reading", f"SELECT {_FIELDS} FROM thinktank_results WHERE run = %s ORDER BY position", (self.run,)
        ).fetchall()
        out = []
        for pid, pos, passed, reason, answer, n_cand, n_ok, pt, ct, calls, cost, hits, lat, cut, err, cands, trace in rows:
            out.append(ProblemRecord(pid, pos, passed, reason, answer, n_cand, n_ok, pt, ct, calls, cost, hits, lat, cut,
                                     err, json.loads(cands), json.loads(trace)))  # fmt: skip
        return out

    def close(self) -> None:
        self._db.close()
