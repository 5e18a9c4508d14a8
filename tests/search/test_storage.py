"""`--study-storage`: a study several processes share (journal file here; PostgreSQL with two real processes in
test_storage_pg.py), clear errors for a malformed or unreachable storage, and which RUNNING trials are stale."""

from __future__ import annotations

import os
import socket
import time

import optuna
import pytest

from thinktank.exceptions import ConfigError
from thinktank.search.storage import describe, open_storage
from thinktank.search.study import SearchSettings, _abandoned, _owner, open_study, run_study

from .fakes import MODELS, engine, problems
from .test_study import SPEC


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("://nowhere", "not a storage URL"),
        ("postgresql://u@h:port/db", "not a storage URL"),
        ("nosuchdb://h/db", "no database driver for nosuchdb"),
        ("sqlite://", "give the database file"),
        ("sqlite:////no/such/dir/study.db", "the directory /no/such/dir does not exist"),
        ("runs/study.db", "a bare path is a journal file; for a SQLite study give sqlite:///runs/study.db"),
        ("/no/such/dir/study.log", "the directory /no/such/dir does not exist"),
    ],
)
def test_a_malformed_storage_is_a_config_error_naming_it(text, message):
    with pytest.raises(ConfigError, match=message):
        open_storage(text)


def test_an_unreachable_server_fails_within_seconds_and_hides_the_password():
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(
        ConfigError, match=rf"postgresql://u:\*\*\*@127\.0\.0\.1:{port}/db: cannot open the study storage"
    ) as info:
        open_storage(f"postgresql://u:sekrit@127.0.0.1:{port}/db")
    assert "sekrit" not in str(info.value) and time.monotonic() - started < 10
    assert describe(f"postgresql://u:sekrit@127.0.0.1:{port}/db") == f"postgresql://u:***@127.0.0.1:{port}/db"


def test_the_storage_stays_out_of_reports():
    settings = SearchSettings(study_storage="postgresql://u:sekrit@h/db")
    assert "study_storage" not in settings.model_dump() and settings.model_dump()["study_name"] == "search"


async def test_two_searches_on_one_journal_file_add_trials_to_one_study(tmp_path):
    eng, _ = engine()
    probs = problems(10)
    from thinktank.search.pool import SamplePool

    pool = SamplePool(tmp_path / "pool.sqlite", probs, SPEC, engine=eng)
    await pool.build()
    ids = [p.id for p in probs]
    journal = tmp_path / "study.log"
    settings = SearchSettings(trials=8, draws=1, study_storage=str(journal), study_name="shared")
    first = await run_study(pool, MODELS, ids, settings, run_dir=tmp_path / "a")
    second = await run_study(pool, MODELS, ids, settings.model_copy(update={"trials": 14}), run_dir=tmp_path / "b")
    assert len(first) == 8 and len(second) == 14 and {r.number for r in first} < {r.number for r in second}
    assert not (tmp_path / "a" / "study.db").exists()  # the study is in the journal, not in the run dir
    study = optuna.load_study(study_name="shared", storage=open_storage(str(journal)))
    assert {t.user_attrs["owner"] for t in study.trials} == {_owner()}
    with pytest.raises(ConfigError, match="draws differ"):  # every process must run the same search
        await run_study(pool, MODELS, ids, settings.model_copy(update={"draws": 3}), run_dir=tmp_path / "c")
    other = open_study(None, settings.model_copy(update={"study_name": "another"}))
    assert other.trials == []  # another name: another study in the same storage
    pool.close()


def test_only_this_hosts_trials_whose_process_is_gone_are_stale():
    host = socket.gethostname()
    assert not _abandoned(_owner())  # this process: still running it
    assert _abandoned(None) and _abandoned("garbage")  # an older study's trial, or an unreadable owner
    assert _abandoned(f"{host}:{os.getpid()}:1")  # this pid, but another process's start time (a reused pid)
    gone = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 10_000
    assert _abandoned(f"{host}:{gone}:123")
    assert not _abandoned(f"another-{host}:1:1")  # another machine's: its process may be running it
