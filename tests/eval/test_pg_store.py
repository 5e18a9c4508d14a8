"""The run store on a real PostgreSQL server: same behaviour as the SQLite `RunStore`, many runs in one database."""

from __future__ import annotations

import asyncio
import socket
import time

import psycopg
import pytest
from postgres_server import PostgresServer

from thinktank.arch import load_architecture
from thinktank.backends import ScriptedBackend
from thinktank.engine import Engine
from thinktank.eval.pg_store import SCHEMA_VERSION, PostgresRunStore
from thinktank.eval.runner import run_eval, summarize
from thinktank.eval.store import RunStore
from thinktank.exceptions import ConfigError, StoreError

from .test_runner import adder, math_problems

pytestmark = pytest.mark.postgres
CONFIG = {"task": "adder", "arch": "single", "models": ["m"]}


async def test_a_run_gives_the_same_records_and_summary_as_the_sqlite_store(postgres_url, tmp_path):
    arch = load_architecture("single", ["m"])
    stores = [RunStore(tmp_path / "run"), PostgresRunStore(postgres_url, "run")]
    summaries = []
    for store in stores:
        store.bind_config(CONFIG)
        progress = await run_eval(Engine({"m": ScriptedBackend(adder)}), arch, math_problems(6), store, concurrency=2)
        assert progress.done == 6
        summaries.append({k: v for k, v in summarize(store).items() if k != "run" and "latency" not in k and k != "wall_s"})
    assert summaries[0] == summaries[1]
    sqlite_records, pg_records = (store.records() for store in stores)
    assert [r.problem_id for r in pg_records] == [f"q{i}" for i in range(6)]
    for a, b in zip(sqlite_records, pg_records, strict=True):
        assert [(c["answer"], c["hidden_verdict"]["passed"]) for c in a.candidates] == [
            (c["answer"], c["hidden_verdict"]["passed"]) for c in b.candidates
        ]
        assert [n["name"] for n in a.trace["children"]] == [n["name"] for n in b.trace["children"]]
        a.latency_s = b.latency_s = 0.0
        a.trace = b.trace = {}
        a.candidates = b.candidates = []
        assert a == b
    assert stores[1].get_meta("wall_s") > 0 and stores[1].run_dir == f"{postgres_url}#run"
    for store in stores:
        store.close()


def test_runs_are_kept_apart_and_a_different_config_under_one_name_is_refused(postgres_url):
    first, second = PostgresRunStore(postgres_url, "a"), PostgresRunStore(postgres_url, "b")
    first.bind_config(CONFIG)
    second.bind_config({**CONFIG, "arch": "vote"})
    first.set_meta("planned", 3)
    assert second.get_meta("planned") is None and second.done_ids() == set()
    again = PostgresRunStore(postgres_url, "a")
    again.bind_config(CONFIG)  # the same run, resumed by another process
    with pytest.raises(ConfigError, match=r"#a holds a run with a different configuration \(arch differ\)"):
        again.bind_config({**CONFIG, "arch": "vote"})
    for store in (first, second, again):
        store.close()


async def test_a_problem_is_committed_once_whoever_writes_it(postgres_url, tmp_path):
    arch = load_architecture("single", ["m"])
    one, other = PostgresRunStore(postgres_url, "r"), PostgresRunStore(postgres_url, "r")
    await run_eval(Engine({"m": ScriptedBackend(adder)}), arch, math_problems(2), one)
    record = one.records()[0]
    with pytest.raises(StoreError, match="problem q0 is already recorded in"):
        other.add(record)
    assert len(other.records()) == 2
    before = one.get_meta("wall_s")
    one.add_wall_time(1.5)
    other.add_wall_time(2.0)
    assert other.get_meta("wall_s") == pytest.approx(before + 3.5)  # both writers' time, summed in the server
    one.close()
    other.close()


def test_wall_time_adds_up_across_writers(postgres_url):
    stores = [PostgresRunStore(postgres_url, "w") for _ in range(3)]
    for store in stores:
        store.add_wall_time(1.25)
    assert stores[0].get_meta("wall_s") == pytest.approx(3.75)
    for store in stores:
        store.close()


def test_a_store_of_another_schema_version_is_refused(postgres_url):
    PostgresRunStore(postgres_url, "r").close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE thinktank_schema SET version = 7 WHERE component = 'run_store'")
    with pytest.raises(
        StoreError, match=f"{postgres_url} has schema version 7 .run_store., this thinktank uses {SCHEMA_VERSION}"
    ):
        PostgresRunStore(postgres_url, "r")


def test_an_unreachable_store_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(StoreError, match=f"shared run store postgresql://tt:\\*\\*\\*@127.0.0.1:{port}/r is unreachable"):
        PostgresRunStore(f"postgresql://tt:pw@127.0.0.1:{port}/r", "run")
    assert time.monotonic() - started < 10


async def test_a_store_that_goes_down_mid_run_keeps_whole_rows_and_the_rerun_resumes(tmp_path):
    with PostgresServer() as server:
        url = server.create_database("runs")
        arch = load_architecture("single", ["m"])
        calls = 0

        async def stops_the_server_at_the_third_call(r, i):
            nonlocal calls
            calls += 1
            if calls == 3:
                await asyncio.to_thread(server.stop, "immediate")
            return adder(r, i)

        store = PostgresRunStore(url, "r")
        store.bind_config(CONFIG)
        with pytest.raises(StoreError, match="is unreachable"):
            await run_eval(Engine({"m": ScriptedBackend(stops_the_server_at_the_third_call)}), arch, math_problems(5),
                           store, concurrency=1)  # fmt: skip
        store.close()
        await asyncio.to_thread(server.start)
        store = PostgresRunStore(url, "r")
        assert store.done_ids() == {"q0", "q1"}
        store.bind_config(CONFIG)
        backend = ScriptedBackend(adder)
        progress = await run_eval(Engine({"m": backend}), arch, math_problems(5), store)
        assert progress.done == 3 and len(backend.requests) == 3 and len(store.records()) == 5
        store.close()


async def test_report_and_trace_read_a_run_kept_on_postgres_by_its_name(postgres_url, tmp_path, monkeypatch):
    """`report --store` / `trace --store` (or $THINKTANK_STORE_URL) read the run `eval --store` wrote, named by its
    run directory's name, with nothing on local disk; a name the server does not hold is refused, not reported empty."""
    from typer.testing import CliRunner

    from thinktank.cli.commands import app

    store = PostgresRunStore(postgres_url, "adder-run")
    store.bind_config(CONFIG)
    await run_eval(Engine({"m": ScriptedBackend(adder)}), load_architecture("single", ["m"]), math_problems(4), store)
    store.close()
    run = tmp_path / "elsewhere" / "adder-run"  # never created: only its name is used
    cli = CliRunner()
    shown = cli.invoke(app, ["report", str(run), "--store", postgres_url, "--markdown", "--html", str(tmp_path / "r.html")],
                       env={"COLUMNS": "250"})  # fmt: skip
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.output.splitlines() if line.startswith("|") and "adder-run" in line)
    assert "| single | 4 | 50.0%" in row  # the adder is right on the even problems only
    assert (tmp_path / "r.html").exists() and not run.exists()
    monkeypatch.setenv("THINKTANK_STORE_URL", postgres_url)
    traced = cli.invoke(app, ["trace", str(run), "q1"], env={"COLUMNS": "250"})
    assert traced.exit_code == 0, traced.output
    assert "q1: failed" in traced.output and "candidate 0" in traced.output
    missing = cli.invoke(app, ["report", str(tmp_path / "no-such-run")], env={"COLUMNS": "250"})
    assert missing.exit_code == 2 and "no run named 'no-such-run'" in missing.output
    monkeypatch.delenv("THINKTANK_STORE_URL")
    local = cli.invoke(app, ["trace", str(run), "q1"], env={"COLUMNS": "250"})
    assert local.exit_code == 2 and "read with --store URL" in " ".join(local.output.split())
