"""Synthesise small SQLite databases from a text schema, so queries can be told apart by their results.

Test-suite accuracy (Zhong, Yu & Klein, 2020): a candidate query counts as equivalent to the gold
query when both return the same result on *several* databases built to separate wrong queries
from right ones. Random rows alone make most filters and joins return nothing, so the data is shaped:

* literal values the gold query compares against (and their ±1 neighbours, and strings matching
  its LIKE patterns) are planted in the filtered columns, so WHERE clauses hit some rows and miss others;
* each column draws from a small domain, so GROUP BY / HAVING see real groups and ORDER BY sees ties;
* foreign keys (inferred in `sql_schema`, or seen as ``a.x = b.y`` in the gold query) draw from the
  referenced keys, so joins match;
* the K variants differ on purpose: typical, NULLs + dangling keys + ties, near-unique values,
  tiny tables, and a mix (cycled for K > 5).

Databases are deterministic for (schema, hints, seed, K) and cached under ``cache_dir("spider_dbs")``.

Example::

    paths = synthesize(schema_text, k=5, seed=0, hint_sqls=[gold_sql])
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sqlite3
import string
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from thinktank._paths import cache_dir
from thinktank.verifiers.sql_schema import Column, ColumnRef, QueryHints, Schema, hints_from_sql, parse_schema

SYNTH_VERSION = 1  # bump when generation changes, so cached databases are rebuilt


@dataclass(frozen=True)
class _Profile:
    rows: tuple[int, int]  # rows per table
    domain: tuple[int, int]  # distinct values per ordinary column
    null_rate: float
    dangling_rate: float  # foreign keys pointing at no row
    hint_rate: float  # rows taking a value from the query's literals
    key_spread: int  # key range = spread x rows, so ids are not always 1..n
    key_focus: int = 0  # if > 0, most foreign keys point at this many rows (big groups for HAVING count(*) > n)


_PROFILES = (
    _Profile(rows=(8, 14), domain=(3, 6), null_rate=0.0, dangling_rate=0.0, hint_rate=0.35, key_spread=1),
    _Profile(rows=(10, 18), domain=(2, 3), null_rate=0.15, dangling_rate=0.1, hint_rate=0.3, key_spread=2, key_focus=3),
    _Profile(rows=(10, 18), domain=(12, 30), null_rate=0.0, dangling_rate=0.05, hint_rate=0.25, key_spread=3),
    _Profile(rows=(1, 4), domain=(1, 3), null_rate=0.0, dangling_rate=0.0, hint_rate=0.5, key_spread=1),
    _Profile(rows=(4, 20), domain=(2, 10), null_rate=0.05, dangling_rate=0.05, hint_rate=0.3, key_spread=2),
)
_POOLS = {
    kind: words.split()
    for kind, words in {
        "first": "Kyle Anna Joe Maria Chen Ravi Sofia Tom Ines Omar Yuki Ben Lena Ivan Nora Paul",
        "last": "Jones Smith Garcia Lee Petrov Okafor Silva Kim Novak Brown Rossi Khan",
        "country": "France USA Japan Brazil Kenya Norway Peru India Egypt Canada Chile Spain",
        "city": "Paris Austin Lagos Oslo Lima Kyoto Porto Quito Perth Delhi Cairo Denver",
        "word": "alpha river stone maple orbit cedar echo lumen delta nova harbor pixel amber willow quartz sierra",
    }.items()
}
_NUMERIC_TEXT = re.compile(r"year|(^|_)age(_|$)|rank|rating|mpg|horsepower|weight|tonnage|number|num_|height")


def _semantic(col: Column) -> str:
    """Which kind of values suit a column, judged by its type and name."""
    n = col.name.lower()
    if col.type in ("bool", "time"):
        return col.type
    if re.search(r"date|time|created", n):
        return "time"
    if "year" in n:
        return "year"
    if re.search(r"(^|_)age(_|$)", n):
        return "age"
    if col.type == "number" or _NUMERIC_TEXT.search(n):
        if re.search(r"price|cost|amount|spent|earning|sales|salary|bonus|weight|share|percent|gnp|money|worth|point|rating", n):
            return "float"
        if re.search(r"population|capacity|attendance|area|tonnage|highest|lowest|average", n):
            return "big"
        return "small"
    for kind, pattern in (("first", r"first_?name|fname"), ("last", r"last_?name|lname"),
                          ("country", r"country|nationality|citizenship|continent|region|language"),
                          ("city", r"city|town|location|state|district|address|street"), ("code", r"code|abbrev"),
                          ("person", r"^(full_?)?name$|_by$|commander|manager|director")):  # fmt: skip
        if re.search(pattern, n):
            return kind
    return "word"


def _fresh_value(kind: str, rng: random.Random) -> Any:
    if kind == "bool":
        return rng.choice("TF")
    if kind == "time":
        day = f"{rng.randint(1985, 2022)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        return f"{day} {rng.randint(0, 23):02d}:{rng.choice((0, 30)):02d}:00"
    ranges = {"year": (1940, 2022), "age": (16, 75), "big": (100, 100_000), "small": (0, 30)}
    if kind in ranges:
        return rng.randint(*ranges[kind])
    if kind == "float":
        return round(rng.uniform(0.5, 150.0), 1)
    if kind == "code":
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(3))
    if kind == "person":
        return f"{rng.choice(_POOLS['first'])} {rng.choice(_POOLS['last'])}"
    if kind == "word" and rng.random() < 0.5:
        return f"{rng.choice(_POOLS['word']).title()} {rng.choice(_POOLS['word'])}"
    return rng.choice(_POOLS[kind])


def _distinct(kind: str, count: int, rng: random.Random) -> list[Any]:
    out: list[Any] = []
    for _ in range(count * 8):
        if len(out) >= count:
            break
        if (value := _fresh_value(kind, rng)) not in out:
            out.append(value)
    return out


def _planted(ref: ColumnRef, hints: QueryHints, rng: random.Random) -> tuple[list[Any], list[Any]]:
    """(exact literals, literals plus neighbours) for one column, in a deterministic order."""
    exact = sorted(hints.literals.get(ref, ()), key=repr)
    for pattern in sorted(hints.patterns.get(ref, ())):
        exact.append(re.sub("%", lambda _: rng.choice(_POOLS["word"]), pattern).replace("_", rng.choice("xyz")))
    near = list(exact)
    for value in exact:
        if isinstance(value, int | float) and not isinstance(value, bool):
            step = 1 if isinstance(value, int) else 0.5
            near += [value - step, value + step]
    return exact, near


def _groups(schema: Schema, hints: QueryHints) -> list[list[ColumnRef]]:
    """Columns whose values must be drawn from one pool: keys, foreign keys and joined columns."""
    parent: dict[ColumnRef, ColumnRef] = {}

    def find(x: ColumnRef) -> ColumnRef:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for t in schema.tables:
        if t.primary_key:
            find((t.name, t.primary_key))
    links = [tuple(pair) for pair in schema.foreign_keys] + [tuple(sorted(pair)) for pair in hints.joins]
    for a, b in sorted(links):
        parent[find(a)] = find(b)
    groups: dict[ColumnRef, list[ColumnRef]] = {}
    for ref in sorted(parent):
        groups.setdefault(find(ref), []).append(ref)
    return list(groups.values())


def _plain_column(
    ref: ColumnRef, col: Column, n: int, hints: QueryHints, profile: _Profile, rng: random.Random
) -> tuple[list, set[int]]:
    """Values for a non-key column, and the rows holding one of the query's exact literals."""
    exact, near = _planted(ref, hints, rng)
    domain = _distinct(_semantic(col), rng.randint(*profile.domain), rng) or ["x"]
    column: list[Any] = []
    for _ in range(n):
        if rng.random() < profile.null_rate:
            column.append(None)
        else:
            column.append(rng.choice(near) if near and rng.random() < profile.hint_rate else rng.choice(domain))
    if exact:  # at least one row satisfies an equality filter
        column[rng.randrange(n)] = rng.choice(exact)
    return column, {i for i, v in enumerate(column) if v in exact}


def _build_rows(
    schema: Schema, hints: QueryHints, profile: _Profile, rng: random.Random
) -> tuple[dict[str, list[list[Any]]], set[ColumnRef]]:
    """Rows per table, and the key columns that hold integers (declared INTEGER PRIMARY KEY)."""
    n_rows = {t.name: rng.randint(*profile.rows) for t in schema.tables}
    groups = _groups(schema, hints)
    keyed = {ref for group in groups for ref in group}
    values: dict[ColumnRef, list[Any]] = {}
    marked: dict[str, set[int]] = {t.name: set() for t in schema.tables}  # rows carrying a planted literal
    for t in schema.tables:
        for col in t.columns:
            if (t.name, col.name) not in keyed:
                values[(t.name, col.name)], hits = _plain_column((t.name, col.name), col, n_rows[t.name], hints, profile, rng)
                marked[t.name] |= hits
    int_keys: set[ColumnRef] = set()
    columns = {(t.name, c.name): c for t in schema.tables for c in t.columns}
    for group in groups:
        pk_refs = [(t.name, pk) for t in schema.tables if (pk := t.primary_key) and (t.name, pk) in group]
        planted = sorted({v for r in group for v in hints.literals.get(r, ())}, key=repr)
        numeric = any(columns[r].type == "number" or r[1].lower().endswith("id") for r in group)
        as_int = numeric and all(isinstance(v, int) for v in planted)
        size = max([n_rows[t] for t, _ in pk_refs] + [6, len(planted)]) * profile.key_spread
        if as_int:
            pool: list[Any] = list(dict.fromkeys(planted + list(range(1, size + 1))))
            int_keys.update(pk_refs)
        else:
            pool = list(dict.fromkeys(planted + _distinct("code", size * 2, rng)))
        for ref in pk_refs:
            rest = [v for v in pool if v not in planted]
            values[ref] = (planted + rng.sample(rest, len(rest)))[: n_rows[ref[0]]]
            rng.shuffle(values[ref])
        targets = sorted({v for r in pk_refs for v in values[r]}, key=repr) or pool[: max(1, size // 2)]
        # Rows that pass the query's filters get referenced more often, so filters and joins combine.
        favoured = sorted({values[(t, c)][i] for t, c in pk_refs for i in marked[t]} | set(planted), key=repr)
        if profile.key_focus:
            favoured = rng.sample(targets, min(profile.key_focus, len(targets)))
        pull = 0.8 if profile.key_focus else 0.5
        for ref in group:
            if ref in values:
                continue
            column: list[Any] = []
            for _ in range(n_rows[ref[0]]):
                roll = rng.random()
                if roll < profile.null_rate / 2:
                    column.append(None)
                elif roll < profile.null_rate / 2 + profile.dangling_rate:
                    column.append(size + rng.randint(1, 9) if as_int else f"ZZ{rng.randint(1, 9)}")
                else:
                    column.append(rng.choice(favoured if favoured and rng.random() < pull else targets))
            values[ref] = column
    rows = {t.name: [list(r) for r in zip(*(values[(t.name, c.name)] for c in t.columns), strict=True)] for t in schema.tables}
    return rows, int_keys


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _write(path: Path, schema: Schema, rows: dict[str, list[list[Any]]], int_keys: set[ColumnRef]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    autoinc = any(t.name.lower() == "sqlite_sequence" for t in schema.tables)  # SQLite creates it itself
    conn = sqlite3.connect(tmp)
    try:
        conn.executescript("PRAGMA page_size=1024; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
        for t in schema.tables:
            if t.name.lower().startswith("sqlite_"):
                continue
            cols = []
            for c in t.columns:
                decl = {"number": "NUMERIC"}.get(c.type, "TEXT")
                if c.name == t.primary_key:
                    decl = "INTEGER PRIMARY KEY" if (t.name, c.name) in int_keys else f"{decl} PRIMARY KEY"
                    if autoinc and decl.startswith("INTEGER"):
                        decl, autoinc = decl + " AUTOINCREMENT", False
                cols.append(f"{_quote(c.name)} {decl}")
            conn.execute(f"CREATE TABLE {_quote(t.name)} ({', '.join(cols)})")
            marks = ", ".join("?" * len(t.columns))
            conn.executemany(f"INSERT INTO {_quote(t.name)} VALUES ({marks})", rows[t.name])
        conn.commit()
    finally:
        conn.close()
    os.replace(tmp, path)


def _with_usage(schema: Schema, hints: QueryHints) -> Schema:
    """Columns without a declared type become numbers when the query uses them as numbers."""
    tables = tuple(
        replace(t, columns=tuple(replace(c, type="number") if not c.declared and (t.name, c.name) in hints.numeric else c
                                 for c in t.columns))
        for t in schema.tables
    )  # fmt: skip
    return replace(schema, tables=tables)


def synthesize(
    schema_text: str, *, k: int = 5, seed: int = 0, hint_sqls: Sequence[str] = (), root: Path | None = None
) -> list[Path]:
    """K database files for the schema, shaped by the literals and joins in `hint_sqls`; built once, then cached."""
    if k < 1:
        raise ValueError("k must be at least 1")
    schema = parse_schema(schema_text)
    hints = QueryHints()
    for sql in hint_sqls:
        hints.update(hints_from_sql(sql, schema))
    schema = _with_usage(schema, hints)
    shape = [[t.name, t.primary_key, [[c.name, c.type] for c in t.columns]] for t in schema.tables]
    digest = hashlib.sha256(json.dumps([SYNTH_VERSION, shape, hints.key()]).encode()).hexdigest()[:20]
    folder = (root or cache_dir("spider_dbs")) / f"{digest}-s{seed}-k{k}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"db{i}.sqlite" for i in range(k)]
    for i, path in enumerate(paths):
        if not path.exists():
            rng = random.Random(int.from_bytes(hashlib.sha256(f"{digest}:{seed}:{i}".encode()).digest()[:8], "big"))
            rows, int_keys = _build_rows(schema, hints, _PROFILES[i % len(_PROFILES)], rng)
            _write(path, schema, rows, int_keys)
    return paths
