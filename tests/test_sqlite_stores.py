"""Every SQLite store thinktank writes refuses a corrupt or foreign file with its own error, naming the path."""

import sqlite3

import pytest

from thinktank._sqlite import open_sqlite
from thinktank.engine.cache import ResponseCache
from thinktank.eval.store import RunStore, StoreError
from thinktank.exceptions import CacheError
from thinktank.search.pool import PoolError, PoolSpec, SamplePool
from thinktank.tasks.base import HiddenChecks, Problem, TaskInput

GARBAGE = b"SQLite format 3\x00" + b"\xff" * 4000  # a header that promises a database, then noise


def open_results(path):
    return RunStore(path.parent)


def open_pool(path):
    problem = Problem(TaskInput("p", "code", "Write f."), HiddenChecks(test_code="def check(candidate): pass"))
    return SamplePool(path, [problem], PoolSpec(models=("small",), n=2))


@pytest.mark.parametrize(
    ("opener", "name", "error", "hint"),
    [
        (open_results, "results.sqlite", StoreError, "new --run-dir"),
        (open_pool, "pool.sqlite", PoolError, "delete it"),
        (ResponseCache, "responses.sqlite", CacheError, "cache clear"),
    ],
)
@pytest.mark.parametrize("content", [GARBAGE, b"not a database at all\n" * 200])
def test_corrupt_file_is_a_clear_error_and_left_untouched(tmp_path, opener, name, error, hint, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error, match="unreadable") as info:
        opener(path)
    assert str(path) in str(info.value) and hint in str(info.value)
    assert path.read_bytes() == content  # nothing was "repaired" over the user's file


def test_foreign_version_is_refused_before_the_schema_touches_it(tmp_path):
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=7")
    db.close()
    with pytest.raises(CacheError, match="schema version 7, this thinktank uses 1"):
        ResponseCache(path)
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == []


def test_reopening_keeps_rows_and_uses_wal(tmp_path):
    path = tmp_path / "sub" / "t.sqlite"
    schema = "CREATE TABLE IF NOT EXISTS t (x INTEGER)"
    db = open_sqlite(path, schema, error=RuntimeError, what="test DB")
    db.execute("INSERT INTO t VALUES (1)")
    db.close()
    again = open_sqlite(path, schema, error=RuntimeError, what="test DB")
    assert again.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert again.execute("PRAGMA journal_mode").fetchone() == ("wal",)
