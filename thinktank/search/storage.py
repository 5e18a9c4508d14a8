"""Where the Optuna study lives: `run_dir/study.db` by default, or a storage several processes share (`--study-storage`).

    storage = open_storage("postgresql://user@db:5432/studies")   # an Optuna RDB URL (SQLAlchemy's form)
    storage = open_storage("sqlite:///shared/study.db")
    storage = open_storage("/shared/nfs/study.log")               # a journal file (Optuna's JournalFileBackend)

Processes pointed at one storage and study name add trials to one study (`load_if_exists`). `postgresql://` is
given to SQLAlchemy's psycopg (3) driver when psycopg2 is not installed (thinktank[postgres] ships psycopg). A
malformed URL, a database driver that is not installed and a server that does not answer are ConfigErrors naming
the URL (its password hidden) within seconds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from thinktank.exceptions import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["CONNECT_TIMEOUT_S", "describe", "open_storage"]

#: how long connecting to a networked study storage may take before it counts as unreachable
CONNECT_TIMEOUT_S = 5
#: tries at creating the tables when other processes create them at the same moment
_CREATE_ATTEMPTS = 8
_EXAMPLES = "sqlite:///PATH, postgresql://USER@HOST:PORT/DB, mysql+pymysql://USER@HOST/DB, or a journal file PATH"


def describe(text: str) -> str:
    """The storage as it may be shown (a URL's password hidden)."""
    if "://" not in text:
        return text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(text).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<malformed URL>"


def open_storage(text: str) -> optuna.storages.BaseStorage:
    text = text.strip()
    if "://" not in text:
        return _journal(text.removeprefix("journal:"))
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise ConfigError(f"--study-storage {describe(text)}: not a storage URL ({exc}); expected {_EXAMPLES}") from exc
    shown = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()
    kwargs: dict[str, object] = {}
    if backend == "sqlite":
        if not url.database:
            raise ConfigError(f"--study-storage {shown}: give the database file, e.g. sqlite:///runs/study.db")
        parent = Path(url.database).parent
        if not parent.is_dir():
            raise ConfigError(f"--study-storage {shown}: the directory {parent} does not exist")
    elif backend == "postgresql":
        if url.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None:
            url = url.set(drivername="postgresql+psycopg")
        kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    elif backend == "mysql":
        kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    try:
        return _rdb(url.render_as_string(hide_password=False), kwargs)
    except (NoSuchModuleError, ImportError, ModuleNotFoundError) as exc:
        hint = " (pip install 'thinktank[postgres]')" if backend == "postgresql" else ""
        raise ConfigError(f"--study-storage {shown}: no database driver for {url.drivername}{hint}: {exc}") from exc
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"--study-storage {shown}: cannot open the study storage: {reason}") from exc


def _rdb(url: str, engine_kwargs: dict[str, object]) -> optuna.storages.RDBStorage:
    """RDBStorage, tried again while another process is creating the same tables at the same moment (PostgreSQL then
    refuses the second CREATE TABLE with a duplicate pg_type row; each try gets further, so a few suffice)."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for _ in range(_CREATE_ATTEMPTS - 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, ProgrammingError) as exc:
            if "duplicate" not in str(exc) and "already exists" not in str(exc):
                raise
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def _journal(path_text: str) -> optuna.storages.BaseStorage:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = Path(path_text).expanduser()
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        raise ConfigError(f"--study-storage {path_text}: a bare path is a journal file; for a SQLite study give sqlite:///{path}")
    if not path.parent.is_dir():
        raise ConfigError(f"--study-storage {path_text}: the directory {path.parent} does not exist")
    if path.exists() and not path.is_file():
        raise ConfigError(f"--study-storage {path_text}: not a file")
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
