"""`thinktank doctor`'s rows for the scaling pieces (issue 15): the optional `ray` extra, and the shared cache and run
store that $THINKTANK_CACHE_URL / $THINKTANK_STORE_URL name. Each outcome is one row with a fix, never a traceback.
The last tests run against a real PostgreSQL server (tests/postgres_server.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import psycopg
import pytest
from blocked_imports import block_import
from postgres_server import PostgresServer
from typer.testing import CliRunner

from thinktank.cli import doctor as doctor_module
from thinktank.cli.commands import app
from thinktank.cli.doctor import Check, check_ray, check_shared_stores
from thinktank.engine import pg_cache
from thinktank.engine.pg_cache import PostgresCache
from thinktank.eval import pg_store
from thinktank.eval.pg_store import PostgresRunStore
from thinktank.testing.fake_openai_server import unused_port

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("THINKTANK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("THINKTANK_CACHE_URL", raising=False)
    monkeypatch.delenv("THINKTANK_STORE_URL", raising=False)


def rows_for(env: dict[str, str]) -> dict[str, Check]:
    return {row.name: row for row in asyncio.run(check_shared_stores(env))}


# --- ray -------------------------------------------------------------------------------------------------------------


def test_the_installed_ray_is_reported_with_its_version_and_the_floor():
    import ray

    [row] = check_ray()
    assert row.status == "ok" and f"ray {ray.__version__} (thinktank needs >=2.40)" in row.detail


def test_no_ray_is_fine_and_says_which_extra_to_install(monkeypatch):
    real = doctor_module.importlib.util.find_spec
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(doctor_module.importlib.util, "find_spec", lambda name: None if name == "ray" else real(name))
    [row] = check_ray()
    assert row.status == "ok" and "not installed" in row.detail and "pip install 'thinktank[ray]'" in row.detail


def test_a_ray_older_than_the_floor_fails_with_the_upgrade(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(__version__="2.9.3"))
    [row] = check_ray()
    assert row == Check("ray", "fail", "ray 2.9.3 is older than thinktank supports (thinktank needs >=2.40)",
                        "pip install -U 'thinktank[ray]'")  # fmt: skip


def test_a_ray_that_breaks_on_import_is_a_failed_row_not_a_traceback(monkeypatch):
    block_import(monkeypatch, "ray", RuntimeError("grpcio wheel does not match this CPU"))
    [row] = check_ray()
    assert row.status == "fail" and "does not import (RuntimeError: grpcio wheel does not match this CPU)" in row.detail
    assert "--force-reinstall" in row.fix


def test_the_floor_is_read_from_thinktanks_own_requirements():
    assert doctor_module._ray_floor() == "2.40"
    assert doctor_module._release("2.40") < doctor_module._release("2.60.0") and doctor_module._release("2.9") < (2, 40)


# --- shared cache and store, no server ----------------------------------------------------------------------------------


def test_unset_urls_are_ok_rows_naming_the_variables():
    rows = rows_for({})
    assert rows["shared cache"].status == "ok" and "THINKTANK_CACHE_URL not set" in rows["shared cache"].detail
    assert rows["shared store"].status == "ok" and "THINKTANK_STORE_URL not set" in rows["shared store"].detail


def test_a_cache_path_is_the_sqlite_cache_but_a_store_path_is_a_mistake(tmp_path):
    rows = rows_for({"THINKTANK_CACHE_URL": str(tmp_path / "c.sqlite"), "THINKTANK_STORE_URL": "runs.sqlite"})
    assert rows["shared cache"].status == "ok" and "names a file" in rows["shared cache"].detail
    store = rows["shared store"]
    assert store.status == "fail" and "THINKTANK_STORE_URL='runs.sqlite' is not a postgresql:// URL" in store.detail
    assert "postgresql://user@host:5432/db" in store.fix


def test_a_server_nobody_listens_on_fails_both_rows_with_the_password_masked():
    url = f"postgresql://tt:hunter2@127.0.0.1:{unused_port()}/db"
    rows = rows_for({"THINKTANK_CACHE_URL": url, "THINKTANK_STORE_URL": url})
    shown = url.replace("hunter2", "***")
    assert f"shared response cache {shown} is unreachable" in rows["shared cache"].detail
    assert f"shared run store {shown} is unreachable" in rows["shared store"].detail
    for row, var in ((rows["shared cache"], "THINKTANK_CACHE_URL"), (rows["shared store"], "THINKTANK_STORE_URL")):
        assert row.status == "fail" and "hunter2" not in row.detail and row.fix == f"start that server, or correct or unset {var}"


def test_without_psycopg_the_row_says_which_extra_to_install(monkeypatch):
    block_import(monkeypatch, "psycopg")
    row = rows_for({"THINKTANK_CACHE_URL": "postgresql://tt@127.0.0.1:1/db"})["shared cache"]
    assert row.status == "fail" and row.fix == "pip install 'thinktank[postgres]'" and "psycopg 3" in row.detail


def test_the_cli_prints_every_row_and_exits_2_without_a_traceback(tmp_path):
    url = f"postgresql://tt@127.0.0.1:{unused_port()}/db"
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "THINKTANK_CACHE": str(tmp_path), "THINKTANK_CACHE_URL": url}
    env.pop("THINKTANK_STORE_URL", None)
    done = subprocess.run([sys.executable, "-m", "thinktank.cli", "doctor", "--json"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["checks"]}
    assert rows["shared cache"]["status"] == "fail" and "is unreachable" in rows["shared cache"]["detail"]
    assert rows["shared store"]["status"] == "ok" and rows["ray"]["status"] == "ok"
    assert "check(s) failed: shared cache" in done.stderr


# --- against a real PostgreSQL server -------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_real_server_is_reachable_then_stamped_then_another_version_then_stopped(postgres_server):
    with PostgresServer() as server:  # its own server: this test stops it
        url = server.create_database("doctor")
        env = {"THINKTANK_CACHE_URL": url, "THINKTANK_STORE_URL": url}
        rows = rows_for(env)
        assert rows["shared cache"] == Check(
            "shared cache", "ok", f"{url} answers; no response_cache schema yet (created on first use)"
        )
        assert rows["shared store"].status == "ok" and "no run_store schema yet" in rows["shared store"].detail
        with psycopg.connect(url) as conn:  # doctor only read: it created nothing
            assert conn.execute("SELECT to_regclass('thinktank_schema')").fetchone() == (None,)

        async def open_both() -> None:
            await (await PostgresCache.open(url)).aclose()

        asyncio.run(open_both())
        PostgresRunStore(url, "run-1").close()
        rows = rows_for(env)
        assert (
            rows["shared cache"].detail
            == f"{url} answers; response_cache schema version {pg_cache.SCHEMA_VERSION}, as this thinktank's"
        )
        assert (
            rows["shared store"].detail
            == f"{url} answers; run_store schema version {pg_store.SCHEMA_VERSION}, as this thinktank's"
        )

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE thinktank_schema SET version = 99 WHERE component = 'response_cache'")
        cache = rows_for(env)["shared cache"]
        assert cache.status == "fail" and f"{url} has schema version 99 (response_cache), this thinktank uses 1" in cache.detail
        assert cache.fix.startswith("point THINKTANK_CACHE_URL at another database")
        assert rows_for(env)["shared store"].status == "ok"

        result = CliRunner().invoke(app, ["doctor", "--json"], env=env)
        report = {row["name"]: row for row in json.loads(result.stdout)["checks"]}
        assert result.exit_code != 0 and report["shared cache"]["status"] == "fail" and report["shared store"]["status"] == "ok"

        server.stop()
        rows = rows_for(env)
        for row in rows.values():
            assert row.status == "fail" and f"{url} is unreachable" in row.detail and "start that server" in row.fix


@pytest.mark.postgres
def test_the_cli_is_clean_against_the_real_server_and_fails_on_a_wrong_port(postgres_url, tmp_path):
    base = {**os.environ, "PYTHONPATH": str(PROJECT), "THINKTANK_CACHE": str(tmp_path)}
    wrong = postgres_url.replace(f":{postgres_url.split(':')[-1].split('/')[0]}/", f":{unused_port()}/")
    for url, code, status in ((postgres_url, None, "ok"), (wrong, 2, "fail")):
        env = {**base, "THINKTANK_CACHE_URL": url, "THINKTANK_STORE_URL": url}
        done = subprocess.run([sys.executable, "-m", "thinktank.cli", "doctor", "--json"],
                              capture_output=True, text=True, env=env, timeout=120, check=False)  # fmt: skip
        assert "Traceback" not in done.stderr, done.stderr
        rows = {row["name"]: row for row in json.loads(done.stdout)["checks"]}
        assert rows["shared cache"]["status"] == rows["shared store"]["status"] == status, rows
        if code is not None:
            assert done.returncode == code and "unreachable" in rows["shared cache"]["detail"]
