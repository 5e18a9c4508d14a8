"""What a text schema and a gold query tell us about a database we do not have.

Spider-style prompts list tables as ``Table: singer. Columns: Singer_ID (number), Name (text)``:
names and coarse types, but no keys and no rows. To synthesise databases on which queries can
be told apart (`sql_synth`) we infer the rest:

* primary keys from naming conventions (``id``, ``<table>_id``/``<table>_code``, else a leading
  ``*id``/``*code`` column of a table that is not a pure link table);
* foreign keys where a column is named after another table's key (``visitor_id`` -> ``visitor.id``);
* from a gold query (`hints_from_sql`): the literals each column is compared with, LIKE patterns,
  ``a.x = b.y`` join pairs the naming rules missed, and columns used as numbers.

Example::

    schema = parse_schema("Table: singer. Columns: Singer_ID (number), Name (text)")
    hints = hints_from_sql("SELECT name FROM singer WHERE name = 'Joe'", schema)
    hints.literals[("singer", "Name")] == {"Joe"}
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

from thinktank.exceptions import VerificationError

ColumnRef = tuple[str, str]  # (table, column), spelled as in the schema
Literal = int | float | str

_TYPES = {"number": "number", "int": "number", "integer": "number", "real": "number", "float": "number",
          "numeric": "number", "text": "text", "varchar": "text", "char": "text", "string": "text",
          "time": "time", "date": "time", "datetime": "time", "timestamp": "time",
          "others": "bool", "boolean": "bool", "bool": "bool"}  # fmt: skip
_KEY_SUFFIXES = ("_id", "id", "_code", "code", "_number", "_no")
_TABLE_LINE = re.compile(r"^\s*Table:\s*(?P<name>[^.]+?)\s*\.\s*Columns:\s*(?P<cols>.*?)\s*$", re.MULTILINE)
_COLUMN = re.compile(r"^(?P<name>.+?)(?:\s+\((?P<type>[A-Za-z ]+)\))?$")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # "number" | "text" | "time" | "bool"
    declared: bool  # False when the type was guessed from the name


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: str | None = None

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name.lower() == name.lower()), None)


@dataclass(frozen=True)
class Schema:
    tables: tuple[Table, ...]
    foreign_keys: tuple[tuple[ColumnRef, ColumnRef], ...] = ()  # (child, parent)

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name.lower() == name.lower()), None)


def guess_type(name: str) -> str:
    """A column type from its name alone, for schemas that give none."""
    n = name.lower()
    if re.search(r"date|time|created|updated", n):
        return "time"
    if re.match(r"(is|if|has)_", n) or n.endswith(("_yn", "_flag")):
        return "bool"
    words = r"(^|_)(age|count|num|number|total|rank|grade|level|score)(_|$)"
    measures = r"year|price|cost|amount|weight|height|points|population|capacity|salary|sales|share|percent|rating|attendance"
    if n.endswith("id") or re.search(words, n) or re.search(measures, n):
        return "number"
    return "text"


def _singulars(table: str) -> set[str]:
    t = table.lower()
    forms = {t, t.removeprefix("ref_")}
    for f in list(forms):
        if f.endswith("ies"):
            forms.add(f[:-3] + "y")
        if f.endswith("es"):
            forms.add(f[:-2])
        if f.endswith("s"):
            forms.add(f[:-1])
    return forms


def _is_key_like(name: str) -> bool:
    return name.lower().endswith(_KEY_SUFFIXES)


def _references(column: str, table: Table) -> bool:
    """Does `column` (in some other table) look like a foreign key to `table`'s primary key?"""
    if table.primary_key is None:
        return False
    c, p = column.lower(), table.primary_key.lower()
    if (c == p and p != "id") or ("_" in p and len(p) > 4 and c.endswith("_" + p)):
        return True
    return any(c in (f"{s}_{p}", f"{s}{p}") or c.endswith(f"_{s}_{p}") for s in _singulars(table.name))


def _infer_keys(tables: list[Table]) -> tuple[list[Table], list[tuple[ColumnRef, ColumnRef]]]:
    strong: dict[str, str] = {}
    for t in tables:
        names = {s + suffix for s in _singulars(t.name) for suffix in _KEY_SUFFIXES} | {"id"}
        pk = next((c.name for c in t.columns if c.name.lower() == "id"), None)
        strong_pk = pk or next((c.name for c in t.columns if c.name.lower() in names), None)
        if strong_pk:
            strong[t.name] = strong_pk
    strong_names = {pk.lower() for pk in strong.values()}
    pks = dict(strong)
    for t in tables:
        if t.name in pks or all(_is_key_like(c.name) for c in t.columns):  # link tables have no key of their own
            continue
        first = next((c.name for c in t.columns[:2] if _is_key_like(c.name)), None)
        others = [Table(u.name, u.columns, pks.get(u.name)) for u in tables if u is not t]
        if first and first.lower() not in strong_names and not any(_references(first, u) for u in others):
            pks[t.name] = first
    keyed = [Table(t.name, t.columns, pks.get(t.name)) for t in tables]
    fks = []
    for t in keyed:
        for c in t.columns:
            parent = next((u for u in keyed if u is not t and _references(c.name, u)), None)
            if parent is not None and parent.primary_key is not None and c.name != t.primary_key:
                fks.append(((t.name, c.name), (parent.name, parent.primary_key)))
    return keyed, fks


def parse_schema(text: str) -> Schema:
    """Parse every ``Table: <name>. Columns: a (type), b (type)`` line; other lines are ignored."""
    tables: list[Table] = []
    for m in _TABLE_LINE.finditer(text):
        columns = []
        for raw in filter(None, (part.strip() for part in m["cols"].split(","))):
            cm = _COLUMN.match(raw)
            assert cm is not None  # the pattern accepts any non-empty string
            declared = _TYPES.get((cm["type"] or "").strip().lower())
            columns.append(Column(cm["name"].strip(), declared or guess_type(cm["name"]), declared is not None))
        name = m["name"].strip()
        if not columns:
            raise VerificationError(f"could not parse schema: table {name!r} lists no columns")
        if len({c.name.lower() for c in columns}) != len(columns):
            raise VerificationError(f"could not parse schema: table {name!r} repeats a column name")
        tables.append(Table(name, tuple(columns)))
    if not tables:
        raise VerificationError(f"could not parse schema: no 'Table: <name>. Columns: ...' lines in {text[:120]!r}")
    if len({t.name.lower() for t in tables}) != len(tables):
        raise VerificationError("could not parse schema: a table name appears twice")
    keyed, fks = _infer_keys(tables)
    return Schema(tuple(keyed), tuple(fks))


# --- what a query says about the data ---------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<ws>\s+)|(?P<str>'(?:[^']|'')*')|(?P<dq>\"(?:[^\"]|\"\")*\")|(?P<qname>`[^`]*`|\[[^\]]*\])"
    r"|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_$]*)"
    r"|(?P<op><>|!=|<=|>=|==|\|\||[-+*/%=<>(),.;])|(?P<other>.)",
    re.DOTALL,
)
_COMPARE = {"=", "==", "!=", "<>", "<", ">", "<=", ">="}


def tokenize_sql(sql: str) -> list[tuple[str, str]]:
    """(kind, text) pairs without whitespace; strings and quoted names keep their quotes out."""
    out = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup or "other"
        text = m.group()
        if kind == "ws":
            continue
        if kind in ("str", "dq"):
            text = text[1:-1].replace(text[0] * 2, text[0])
        elif kind == "qname":
            kind, text = "name", text[1:-1]
        out.append((kind, text))
    return out


@dataclass
class QueryHints:
    """Facts about the data a query relies on; merged over several queries with `update`."""

    literals: dict[ColumnRef, set[Literal]] = field(default_factory=lambda: defaultdict(set))
    patterns: dict[ColumnRef, set[str]] = field(default_factory=lambda: defaultdict(set))
    joins: set[frozenset[ColumnRef]] = field(default_factory=set)
    numeric: set[ColumnRef] = field(default_factory=set)

    def update(self, other: QueryHints) -> None:
        for ref, values in other.literals.items():
            self.literals[ref] |= values
        for ref, pats in other.patterns.items():
            self.patterns[ref] |= pats
        self.joins |= other.joins
        self.numeric |= other.numeric

    def key(self) -> str:
        """A canonical string, so equal hints give equal cache keys."""

        def lits(values: set) -> list:
            return sorted(([type(v).__name__, v] for v in values), key=repr)

        return json.dumps(
            {
                "literals": sorted([list(r), lits(v)] for r, v in self.literals.items() if v),
                "patterns": sorted([list(r), sorted(v)] for r, v in self.patterns.items() if v),
                "joins": sorted(sorted(list(r) for r in pair) for pair in self.joins),
                "numeric": sorted(list(r) for r in self.numeric),
            }
        )


def hints_from_sql(sql: str, schema: Schema) -> QueryHints:
    """Comparisons, LIKE patterns, joins and numeric uses of columns in one query (best effort)."""
    toks = tokenize_sql(sql)
    hints = QueryHints()
    aliases: dict[str, Table] = {}
    for i, (kind, text) in enumerate(toks[:-1]):
        if kind == "name" and text.upper() in ("FROM", "JOIN") and (table := schema.table(toks[i + 1][1])):
            aliases[table.name.lower()] = table
            j = i + 3 if i + 2 < len(toks) and toks[i + 2][1].upper() == "AS" else i + 2
            if j < len(toks) and toks[j][0] == "name" and not schema.table(toks[j][1]):
                aliases[toks[j][1].lower()] = table

    def column_at(i: int) -> tuple[list[ColumnRef], int]:
        if i >= len(toks) or toks[i][0] not in ("name", "dq") or (i > 0 and toks[i - 1][1] == "."):
            return [], i
        if i + 2 < len(toks) and toks[i + 1][1] == "." and (table := aliases.get(toks[i][1].lower())):
            col = table.column(toks[i + 2][1])
            return ([(table.name, col.name)] if col else []), i + 3
        if i + 1 < len(toks) and toks[i + 1][1] in (".", "("):
            return [], i
        tables = [t for t in aliases.values() if t.column(toks[i][1])] or [t for t in schema.tables if t.column(toks[i][1])]
        return [(t.name, t.column(toks[i][1]).name) for t in tables], i + 1  # type: ignore[union-attr]

    def literal_at(i: int) -> tuple[Literal | None, int]:
        sign = -1 if i + 1 < len(toks) and toks[i][1] == "-" and toks[i + 1][0] == "num" else 1
        j = i + 1 if sign == -1 else i
        if j >= len(toks):
            return None, i
        kind, text = toks[j]
        if kind == "num":
            return sign * (float(text) if any(ch in text for ch in ".eE") else int(text)), j + 1
        if kind == "str" or (kind == "dq" and not column_at(j)[0]):
            return text, j + 1
        return None, i

    for i in range(len(toks)):
        if toks[i][0] == "name" and toks[i][1].lower() in ("sum", "avg") and i + 1 < len(toks) and toks[i + 1][1] == "(":
            j = i + 3 if i + 2 < len(toks) and toks[i + 2][1].upper() == "DISTINCT" else i + 2
            hints.numeric.update(column_at(j)[0])
        refs, j = column_at(i)
        if not refs or j >= len(toks):
            continue
        op = toks[j][1].upper()
        negated = op == "NOT"
        if negated and j + 1 < len(toks):
            j += 1
            op = toks[j][1].upper()
        values: list[Literal] = []
        if op in _COMPARE:
            value, _ = literal_at(j + 1)
            other, _ = column_at(j + 1)
            if value is not None:
                values.append(value)
            elif op in ("=", "==") and other:
                hints.joins.update(frozenset((a, b)) for a in refs for b in other if a != b)
        elif op in ("LIKE", "GLOB") and j + 1 < len(toks) and toks[j + 1][0] in ("str", "dq"):
            for ref in refs:
                hints.patterns[ref].add(toks[j + 1][1])
        elif op == "BETWEEN":
            low, k = literal_at(j + 1)
            high, _ = literal_at(k + 1) if k < len(toks) and toks[k][1].upper() == "AND" else (None, k)
            values.extend(v for v in (low, high) if v is not None)
        elif op == "IN" and j + 1 < len(toks) and toks[j + 1][1] == "(":
            k = j + 2
            while (found := literal_at(k))[0] is not None:
                values.append(found[0])  # type: ignore[arg-type]
                k = found[1] + 1 if found[1] < len(toks) and toks[found[1]][1] == "," else len(toks)
        for ref in refs:
            hints.literals[ref].update(values)
            if any(isinstance(v, int | float) for v in values):
                hints.numeric.add(ref)
    return hints
