"""How thinktank opens its own SQLite files (results DB, sample pool, response cache).

One place decides the settings every store needs: autocommit (each store writes whole
rows in its own explicit transactions), WAL so a reader (`thinktank report` on a live
run) never blocks the writer, a busy timeout for a second process on the same file, and a
corrupt or foreign file reported as the store's own error, naming the path, instead of a
bare `sqlite3.DatabaseError` from somewhere later.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path


def open_sqlite(
    path: Path,
    schema: str,
    *,
    error: Callable[[str], Exception],
    what: str,
    hint: str = "",
    user_version: int | None = None,
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """Open (creating if needed) `path` and apply `schema` (idempotent `CREATE … IF NOT EXISTS`).

    `what` names the file in errors ("results DB"); `hint` is appended to say what the user can do.
    With `user_version`, a file stamped with another version is refused before the schema touches it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = f"; {hint}" if hint else ""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA busy_timeout=5000")
        (ok,) = db.execute("PRAGMA quick_check").fetchone()
        if ok != "ok":
            raise sqlite3.DatabaseError(ok)
        if user_version is not None:
            (found,) = db.execute("PRAGMA user_version").fetchone()
            if found not in (0, user_version):
                db.close()
                raise error(f"{what} {path} has schema version {found}, this thinktank uses {user_version}{suffix}")
        db.executescript(schema)
        if user_version is not None:
            db.execute(f"PRAGMA user_version={int(user_version)}")
    except sqlite3.DatabaseError as exc:
        raise error(f"{what} {path} is unreadable ({exc}){suffix}") from exc
    return db
