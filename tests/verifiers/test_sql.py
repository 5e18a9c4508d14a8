import asyncio
import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

import thinktank.verifiers.sql as sql_module
from thinktank.exceptions import VerificationError
from thinktank.verifiers.sql import (
    HEAP_LIMIT_BYTES,
    SqlResult,
    SqlVerifier,
    extract_sql,
    has_top_level_order_by,
    normalize,
    result_difference,
    run_query,
)

SCHEMA = """Table: stadium. Columns: Stadium_ID (number), Location (text), Name (text), Capacity (number)
Table: singer. Columns: Singer_ID (number), Name (text), Country (text), Song_Name (text), Age (number), Is_male (others)
Table: concert. Columns: concert_ID (number), concert_Name (text), Stadium_ID (text), Year (text)
Table: singer_in_concert. Columns: concert_ID (number), Singer_ID (text)"""


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sql_dbs")


@pytest.fixture
def verifier(db_dir: Path) -> SqlVerifier:
    return SqlVerifier(k=5, timeout_s=2.0, db_dir=db_dir)


@pytest.mark.parametrize(
    ("gold", "candidate"),
    [
        ("SELECT count(*) FROM singer", "SELECT COUNT(singer_id) FROM singer"),
        ("SELECT count(*) ,  country FROM singer GROUP BY country", "select country, count(*) from singer group by 1"),
        ("SELECT DISTINCT country FROM singer WHERE age  >  20", "SELECT country FROM singer WHERE age >= 21 GROUP BY country"),
        ("SELECT name FROM singer ORDER BY age DESC", "SELECT s.name FROM singer AS s ORDER BY s.age DESC"),
        (
            "SELECT avg(age) FROM singer WHERE country = 'France'",
            "SELECT sum(age) * 1.0 / count(age) FROM singer WHERE country = 'France'",
        ),
        (
            "SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id",
            "SELECT stadium.name FROM stadium JOIN concert ON concert.stadium_id = stadium.stadium_id",
        ),
    ],
)
async def test_equivalent_sql_passes(verifier: SqlVerifier, gold: str, candidate: str) -> None:
    verdict = await verifier.grade(candidate, gold, SCHEMA)
    assert verdict.passed, verdict.reason
    assert verdict.score == 1.0
    assert verdict.details["matched"] == 5


@pytest.mark.parametrize(
    ("gold", "candidate"),
    [
        ("SELECT count(*) FROM singer", "SELECT count(*) FROM singer WHERE age > 30"),
        ("SELECT count(*) FROM singer", "SELECT count(country) FROM singer"),  # NULLs in one database
        ("SELECT DISTINCT country FROM singer WHERE age  >  20", "SELECT DISTINCT country FROM singer WHERE age >= 20"),
        ("SELECT DISTINCT country FROM singer WHERE age  >  20", "SELECT country FROM singer WHERE age > 20"),
        ("SELECT name FROM singer WHERE country = 'France'", "SELECT name FROM singer WHERE country = 'france'"),
        ("SELECT name, age FROM singer", "SELECT name, age FROM singer LIMIT 3"),
        (
            "SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id",
            "SELECT name FROM stadium",
        ),
    ],
)
async def test_wrong_sql_fails_on_at_least_one_database(verifier: SqlVerifier, gold: str, candidate: str) -> None:
    verdict = await verifier.grade(candidate, gold, SCHEMA)
    assert not verdict.passed
    assert verdict.score < 1.0
    assert "first difference on database" in verdict.reason


async def test_row_order_matters_only_when_gold_orders(verifier: SqlVerifier) -> None:
    ordered_gold = "SELECT name, age FROM singer ORDER BY age DESC, name"
    reversed_order = await verifier.grade("SELECT name, age FROM singer ORDER BY age, name DESC", ordered_gold, SCHEMA)
    assert not reversed_order.passed
    assert "different order" in reversed_order.reason
    unordered_gold = "SELECT name, age FROM singer"
    sorted_candidate = await verifier.grade("SELECT name, age FROM singer ORDER BY age DESC", unordered_gold, SCHEMA)
    assert sorted_candidate.passed, sorted_candidate.reason


def test_values_are_normalised_before_comparing() -> None:
    assert normalize(1.0) == normalize(1) == normalize("1") == 1
    assert normalize(0.1 + 0.2) == normalize(0.3)
    assert normalize("France") == "France"
    gold = SqlResult(("a", "b"), ((1, 2.5), (3, None)))
    assert result_difference(gold, SqlResult(("x", "y"), ((3.0, None), (1, "2.5"))), ordered=False) is None
    assert result_difference(gold, SqlResult(("b", "a"), ((2.5, 1), (None, 3))), ordered=True) is None  # column order ignored
    assert result_difference(gold, SqlResult(("a", "b"), ((3, None), (1, 2.5))), ordered=True) == "same rows in a different order"
    assert result_difference(gold, SqlResult(("a", "b"), ((1, 2.5), (3, 0))), ordered=False) is not None  # NULL is not 0
    assert "columns" in (result_difference(gold, SqlResult(("a",), ((1,), (3,))), ordered=False) or "")
    duplicated = SqlResult(("a", "b"), ((1, 2.5), (1, 2.5)))
    assert result_difference(gold, duplicated, ordered=False) == "expected row (3, None) is missing (instead got (1, 2.5))"


async def test_never_ending_query_is_stopped_by_the_time_limit(db_dir: Path) -> None:
    verifier = SqlVerifier(k=5, timeout_s=0.5, db_dir=db_dir)
    endless = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT count(*) FROM r"
    start = time.monotonic()
    verdict = await verifier.grade(endless, "SELECT count(*) FROM singer", SCHEMA)
    assert not verdict.passed
    assert verdict.reason == "timeout: timed out after 0.5s"
    assert verdict.details["error_kind"] == "timeout"
    assert time.monotonic() - start < 2.0  # stopped on the first database, not run K times


async def test_huge_results_hit_the_row_cap(db_dir: Path) -> None:
    verifier = SqlVerifier(k=5, max_rows=1000, db_dir=db_dir)
    result = await verifier.execute("SELECT a.name FROM singer a, singer b, singer c, singer d", SCHEMA)
    assert result.error_kind == "too_large"
    assert "more than 1000 rows" in (result.error or "")
    big_value = await verifier.execute("SELECT zeroblob(5000000)", SCHEMA)
    assert big_value.error_kind == "too_large"


@pytest.mark.parametrize(
    ("statement", "denied_action"),
    [
        ("DELETE FROM singer", "delete"),
        ("UPDATE singer SET age = 1", "update"),
        ("INSERT INTO singer (name) VALUES ('x')", "insert"),
        ("DROP TABLE singer", "delete sqlite_master"),  # SQLite asks about the catalogue change first
        ("CREATE TEMP TABLE t AS SELECT 1", "insert sqlite_temp_master"),
        ("ATTACH DATABASE '{dir}/attached.db' AS other", "attach"),
        ("VACUUM INTO '{dir}/copy.db'", "attach"),
        ("PRAGMA journal_mode = WAL", "pragma"),
        ("PRAGMA table_info(singer)", "pragma"),
        ("SELECT load_extension('{dir}/evil.so')", "function load_extension"),
        ("BEGIN IMMEDIATE", "transaction"),
    ],
)
async def test_everything_but_reading_is_denied(
    verifier: SqlVerifier, tmp_path: Path, statement: str, denied_action: str
) -> None:
    path = verifier.databases(SCHEMA, [])[0]
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = await verifier.execute(statement.format(dir=tmp_path), SCHEMA, hint_sqls=[])
    assert result.error_kind == "denied", result
    assert result.error is not None and result.error.startswith("not allowed: ") and denied_action in result.error
    assert list(tmp_path.iterdir()) == []  # nothing created
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [f"db{i}.sqlite" for i in range(5)]  # no journal or temp files


def test_run_query_opens_read_only_and_sets_the_heap_limit(tmp_path: Path) -> None:
    db = tmp_path / "plain.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    assert run_query(db, "SELECT x FROM t").rows == ((1,),)
    limit = sqlite3.connect(":memory:").execute("PRAGMA hard_heap_limit").fetchone()[0]
    assert 0 < limit <= HEAP_LIMIT_BYTES


async def test_errors_carry_sqlites_message(verifier: SqlVerifier) -> None:
    syntax = await verifier.grade("SELEC name FROM singer", "SELECT name FROM singer", SCHEMA)
    assert not syntax.passed
    assert syntax.reason == 'syntax: near "SELEC": syntax error'
    missing = await verifier.grade("SELECT nme FROM singer", "SELECT name FROM singer", SCHEMA)
    assert missing.reason == "error: no such column: nme"
    two = await verifier.execute("SELECT 1; SELECT 2", SCHEMA)
    assert two.error_kind == "syntax" and "one statement" in (two.error or "")
    empty = await verifier.execute("  ; ", SCHEMA)
    assert empty.error == "empty query"


async def test_a_broken_gold_query_is_a_verification_error(verifier: SqlVerifier) -> None:
    with pytest.raises(VerificationError, match="gold SQL fails.*no such table: singers"):
        await verifier.grade("SELECT 1", "SELECT * FROM singers", SCHEMA)


async def test_execute_uses_the_querys_own_literals_to_return_rows(verifier: SqlVerifier) -> None:
    result = await verifier.execute("SELECT name FROM singer WHERE country = 'Atlantis'", SCHEMA, db_index=2)
    assert result.ok and result.columns == ("Name",)
    assert len(result.rows) >= 1
    with pytest.raises(ValueError):
        await verifier.execute("SELECT 1", SCHEMA, db_index=5)


async def test_concurrency_is_bounded(db_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_flight = peak = 0
    real = sql_module.run_query

    def slow_run_query(*args, **kwargs):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        time.sleep(0.05)
        in_flight -= 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sql_module, "run_query", slow_run_query)
    verifier = SqlVerifier(k=5, concurrency=2, db_dir=db_dir)
    results = await asyncio.gather(*(verifier.execute(f"SELECT {i}", SCHEMA, hint_sqls=[]) for i in range(6)))
    assert [r.rows for r in results] == [((i,),) for i in range(6)]
    assert peak == 2


def test_extract_sql_from_model_replies() -> None:
    assert extract_sql("Sure:\n```sql\nSELECT name\nFROM singer;\n```\nDone.") == "SELECT name\nFROM singer"
    assert extract_sql("```\nselect count(*) from singer\n```") == "select count(*) from singer"
    assert extract_sql("```python\nprint(1)\n```\n```SQLite\nSELECT 1\n```") == "SELECT 1"
    assert extract_sql("The query is SELECT name FROM singer WHERE age > 3; it works.") == "SELECT name FROM singer WHERE age > 3"
    assert (
        extract_sql("with t as (select 1)\nselect * from t\n\nThis works with SQLite.") == "with t as (select 1)\nselect * from t"
    )
    assert extract_sql("```sql\nSELECT name FROM singer") == "SELECT name FROM singer"  # reply cut off mid-fence
    assert extract_sql("I would select the oldest singer with care.") is None


def test_only_a_top_level_order_by_makes_order_matter() -> None:
    assert has_top_level_order_by("SELECT name FROM singer ORDER BY age")
    assert has_top_level_order_by("SELECT a FROM x UNION SELECT b FROM y order  by 1")
    assert not has_top_level_order_by("SELECT name FROM singer WHERE age > (SELECT age FROM singer ORDER BY age LIMIT 1)")
    assert not has_top_level_order_by("SELECT 'ORDER BY' FROM singer")
