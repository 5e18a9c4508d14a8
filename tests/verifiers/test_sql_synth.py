import sqlite3
from pathlib import Path

import pytest

from thinktank.exceptions import VerificationError
from thinktank.verifiers.sql_schema import hints_from_sql, parse_schema
from thinktank.verifiers.sql_synth import synthesize

PETS = """Table: Student. Columns: StuID (number), LName (text), Fname (text), Age (number), Sex (text), city_code (text)
Table: Has_Pet. Columns: StuID (number), PetID (number)
Table: Pets. Columns: PetID (number), PetType (text), pet_age (number), weight (number)"""

WORLD = """Table: city. Columns: ID (number), Name (text), CountryCode (text), District (text), Population (number)
Table: sqlite_sequence. Columns: name (text), seq (text)
Table: country. Columns: Code (text), Name (text), Continent (text), Region (text), IndepYear (number)
Table: countrylanguage. Columns: CountryCode (text), Language (text), IsOfficial (text), Percentage (number)"""

PETS_JOIN = (
    "SELECT count(*) FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid "
    "JOIN pets AS T3 ON T2.petid = T3.petid WHERE T1.sex = 'F' AND T3.pettype = 'dog'"
)


def rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_parse_schema_reads_tables_types_and_keys() -> None:
    schema = parse_schema("Answer this.\n" + PETS + "\n\nQuestion: how many?")
    assert [t.name for t in schema.tables] == ["Student", "Has_Pet", "Pets"]
    student = schema.table("student")
    assert student is not None and student.primary_key == "StuID"
    assert [(c.name, c.type) for c in student.columns[:3]] == [("StuID", "number"), ("LName", "text"), ("Fname", "text")]
    assert schema.table("Has_Pet").primary_key is None  # type: ignore[union-attr]  # a link table
    assert set(schema.foreign_keys) == {(("Has_Pet", "StuID"), ("Student", "StuID")), (("Has_Pet", "PetID"), ("Pets", "PetID"))}


def test_parse_schema_handles_odd_names_and_missing_types() -> None:
    schema = parse_schema(
        "Table: performance. Columns: Performance_ID (number), Official_ratings_(millions) (number), Date (text)\n"
        "Table: visitor. Columns: ID, Name, Age, Is_member, Joined_date\n"
        "Table: visit. Columns: Museum_ID, visitor_ID, Total_spent"
    )
    assert [c.name for c in schema.tables[0].columns] == ["Performance_ID", "Official_ratings_(millions)", "Date"]
    visitor = schema.table("visitor")
    assert visitor is not None and visitor.primary_key == "ID"
    assert [(c.type, c.declared) for c in visitor.columns] == [
        ("number", False), ("text", False), ("number", False), ("bool", False), ("time", False)
    ]  # fmt: skip
    assert (("visit", "visitor_ID"), ("visitor", "ID")) in schema.foreign_keys


@pytest.mark.parametrize(
    "text",
    [
        "no tables here",
        "Table: t. Columns: ",
        "Table: t. Columns: a (number), A (text)",
        "Table: t. Columns: a\nTable: T. Columns: b",
    ],
)
def test_unparseable_schema_is_a_clear_error(text: str) -> None:
    with pytest.raises(VerificationError, match="could not parse schema"):
        parse_schema(text)


def test_hints_from_gold_sql() -> None:
    schema = parse_schema(PETS)
    hints = hints_from_sql(PETS_JOIN, schema)
    assert hints.literals[("Student", "Sex")] == {"F"}
    assert hints.literals[("Pets", "PetType")] == {"dog"}
    assert hints.joins == {
        frozenset({("Student", "StuID"), ("Has_Pet", "StuID")}),
        frozenset({("Has_Pet", "PetID"), ("Pets", "PetID")}),
    }
    other = hints_from_sql(
        'SELECT avg(weight) FROM pets WHERE pet_age BETWEEN 2 AND 5 OR PetType IN ("cat", "dog") OR pettype LIKE "%bird%"', schema
    )
    assert other.literals[("Pets", "pet_age")] == {2, 5}
    assert other.literals[("Pets", "PetType")] == {"cat", "dog"}
    assert other.patterns[("Pets", "PetType")] == {"%bird%"}
    assert other.numeric == {("Pets", "weight"), ("Pets", "pet_age")}


def test_databases_are_deterministic_cached_and_vary_by_seed(tmp_path: Path) -> None:
    first = synthesize(PETS, k=3, seed=7, hint_sqls=[PETS_JOIN], root=tmp_path / "a")
    again = synthesize(PETS, k=3, seed=7, hint_sqls=[PETS_JOIN], root=tmp_path / "b")
    dump = "SELECT * FROM Student ORDER BY StuID"
    assert [rows(p, dump) for p in first] == [rows(p, dump) for p in again]
    mtimes = [p.stat().st_mtime_ns for p in first]
    assert synthesize(PETS, k=3, seed=7, hint_sqls=[PETS_JOIN], root=tmp_path / "a") == first
    assert [p.stat().st_mtime_ns for p in first] == mtimes  # served from the cache, not rebuilt
    other_seed = synthesize(PETS, k=3, seed=8, hint_sqls=[PETS_JOIN], root=tmp_path / "a")
    assert other_seed[0].parent != first[0].parent
    assert [rows(p, dump) for p in other_seed] != [rows(p, dump) for p in first]
    assert synthesize(PETS, k=4, seed=7, hint_sqls=[PETS_JOIN], root=tmp_path / "a")[0].parent != first[0].parent


def test_data_is_shaped_so_filters_joins_and_groups_are_non_trivial(tmp_path: Path) -> None:
    paths = synthesize(PETS, k=5, seed=0, hint_sqls=[PETS_JOIN], root=tmp_path)
    without_sex = PETS_JOIN.replace("T1.sex = 'F' AND ", "")
    without_type = PETS_JOIN.replace(" AND T3.pettype = 'dog'", "")
    assert any(rows(p, PETS_JOIN) != rows(p, without_sex) for p in paths)  # each filter matters
    assert any(rows(p, PETS_JOIN) != rows(p, without_type) for p in paths)
    for path in paths:
        assert rows(path, PETS_JOIN)[0][0] >= 1  # planted literals + keys that favour them make the 3-way join hit
        assert rows(path, "SELECT count(*) FROM Has_Pet WHERE StuID IN (SELECT StuID FROM Student)")[0][0] >= 1
        if rows(path, "SELECT count(*) FROM Student")[0][0] > 2:  # all but the one- or two-row edge-case variant
            assert rows(path, "SELECT count(*) FROM Student WHERE sex <> 'F' OR sex IS NULL")[0][0] >= 1  # sex = 'F' drops rows
    sizes = [rows(p, "SELECT count(*) FROM Student")[0][0] for p in paths]
    assert len(set(sizes)) > 1  # variants differ
    groups = [max(n for (n,) in rows(p, "SELECT count(*) FROM Student GROUP BY Age")) for p in paths]
    assert max(groups) > 1  # small domains give real groups
    nulls = [rows(p, "SELECT count(*) FROM Student WHERE LName IS NULL OR Age IS NULL")[0][0] for p in paths]
    assert nulls[0] == 0 and any(n > 0 for n in nulls)  # the first database has none, some other has NULLs
    unique_keys = [rows(p, "SELECT count(*) = count(DISTINCT StuID) FROM Student")[0][0] for p in paths]
    assert unique_keys == [1] * 5


def test_numeric_literals_get_neighbours_and_like_patterns_get_matches(tmp_path: Path) -> None:
    gold = "SELECT count(*) FROM pets WHERE weight > 10 AND pettype LIKE '%og%'"
    paths = synthesize(PETS, k=5, seed=0, hint_sqls=[gold], root=tmp_path)
    weights = {w for p in paths for (w,) in rows(p, "SELECT weight FROM Pets")}
    assert {9, 10, 11} <= weights
    assert any(rows(p, "SELECT count(*) FROM Pets WHERE pettype LIKE '%og%'")[0][0] > 0 for p in paths)


def test_untyped_columns_become_numbers_when_the_query_sums_them(tmp_path: Path) -> None:
    schema = "Table: sale. Columns: sale_id, shop, total_value"
    paths = synthesize(schema, k=2, seed=0, hint_sqls=["SELECT shop, sum(total_value) FROM sale GROUP BY shop"], root=tmp_path)
    types = {t for p in paths for (t,) in rows(p, "SELECT DISTINCT typeof(total_value) FROM sale")}
    assert types <= {"integer", "real", "null"} and types & {"integer", "real"}


def test_reserved_sqlite_sequence_table_is_created_by_sqlite_itself(tmp_path: Path) -> None:
    gold = 'SELECT Region FROM country AS T1 JOIN city AS T2 ON T1.Code = T2.CountryCode WHERE T2.Name = "Kabul"'
    for path in synthesize(WORLD, k=5, seed=0, hint_sqls=[gold], root=tmp_path):
        assert rows(path, "SELECT count(*) FROM sqlite_sequence")[0][0] == 1
        assert len(rows(path, gold)) >= 1  # text keys join: CountryCode draws from country.Code
