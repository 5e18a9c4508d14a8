"""The dashboard's pages against run directories written by the real eval runner and search report writer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.verifiers import unprivileged
from thinktank.eval.metrics import paired_difference
from thinktank.eval.runner import run_eval, summarize
from thinktank.eval.store import RunStore
from thinktank.search.space import Config
from thinktank.ui import UiSettings, create_app

from .runs import eval_run, math_problems, repair_run, search_run, solver

A_WRONG, B_WRONG = {1, 3}, {3, 5, 6}


@pytest.fixture
async def runs(tmp_path):
    root = tmp_path / "runs"
    await eval_run(root / "a", A_WRONG)
    await eval_run(root / "b", B_WRONG, arch="sample-8-vote")
    await repair_run(root / "rep")
    search_run(root / "search")
    return root


def client(root, **kw):
    return TestClient(create_app(UiSettings(runs=root, poll_s=0.05, **kw)))


@contextlib.contextmanager
def live_server(root: Path) -> Iterator[httpx.Client]:
    """The app behind a real uvicorn server on loopback, for the event streams.

    Starlette's TestClient (before 1.x) runs an endpoint to completion before returning its body, so a stream that
    ends only when the run does could never be read while it is open; a real server streams with any version."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(UiSettings(runs=root, poll_s=0.05)), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the uvicorn server did not start"
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def cell(html, row_run, cls):
    row = re.search(rf'<tr class="run" data-run="{row_run}"[^>]*>(.*?)</tr>', html, re.S).group(1)
    return re.search(rf'<td class="{cls}">(.*?)</td>', row).group(1)


def test_an_empty_or_missing_runs_dir_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    for root in (tmp_path / "empty", tmp_path / "missing"):
        page = client(root).get("/")
        assert page.status_code == 200 and 'id="empty"' in page.text and "No runs under" in page.text


async def test_runs_list_shows_each_runs_summary_and_unreadable_runs_with_the_reason(runs):
    (runs / "corrupt").mkdir()
    (runs / "corrupt" / "results.sqlite").write_bytes(b"not a database" * 100)
    await eval_run(runs / "future", set())
    with sqlite3.connect(runs / "future" / "results.sqlite") as db:  # as a later thinktank would stamp it
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    page = client(runs).get("/")
    assert page.status_code == 200
    for name in ("a", "b", "rep"):
        store = RunStore(runs / name)
        s = summarize(store)
        store.close()
        assert cell(page.text, name, "accuracy") == f"{100 * s['accuracy']:.1f}%"
        assert cell(page.text, name, "ci") == f"{100 * s['ci95'][0]:.1f}–{100 * s['ci95'][1]:.1f}%"
        assert cell(page.text, name, "tpp") == f"{s['tokens_per_problem']:.1f}"
        assert cell(page.text, name, "problems") == str(s["problems"])
    assert cell(page.text, "a", "accuracy") == "75.0%" and cell(page.text, "b", "accuracy") == "62.5%"
    assert re.search(r'data-run="corrupt".*unreadable: results DB .*corrupt/results.sqlite is unreadable', page.text)
    assert re.search(r'data-run="future".*unreadable: .*written by another thinktank version \(schema 99', page.text)
    assert 'data-filter="arch"' in page.text and '<option value="sample-8-vote">' in page.text
    assert 'href="/search?name=search"' in page.text
    # the unreadable run's own page names the reason too
    detail = client(runs).get("/run", params={"name": "corrupt"})
    assert detail.status_code == 422 and "is unreadable" in detail.text


async def test_comparison_pairs_runs_and_links_won_and_lost_problems(runs):
    page = client(runs).get("/compare", params=[("run", "a"), ("run", "b")])
    assert page.status_code == 200
    a = [i not in A_WRONG for i in range(8)]
    b = [i not in B_WRONG for i in range(8)]
    p = paired_difference(a, b)
    row = re.search(r'<tr data-run="b">(.*?)</tr>', page.text, re.S).group(1)
    assert f'<td class="delta">{100 * p.delta:+.1f}</td>' in row and f'<td class="p">{p.p_value:.3g}</td>' in row
    assert f"{100 * p.low:+.1f} to {100 * p.high:+.1f}" in row
    won = re.search(r'class="l won">(.*?)</td>', row).group(1)
    lost = re.search(r'class="l lost">(.*?)</td>', row).group(1)
    assert won.startswith("1: ") and 'href="/problem?run=b&amp;id=q1"' in won  # b solved q1, a did not
    assert lost.startswith("2: ") and "id=q5" in lost and "id=q6" in lost
    assert client(runs).get("/compare", params={"run": "a"}).status_code == 400


async def test_problem_view_shows_the_call_tree_candidates_and_repair_diffs(runs):
    page = client(runs).get("/problem", params={"run": "rep", "id": "inc/0"})
    assert page.status_code == 200
    store = RunStore(runs / "rep")
    (record,) = store.records()
    store.close()
    assert "<b>generate0</b>" in page.text and "<b>repair1</b>" in page.text and "<b>round2</b>" in page.text
    assert f"{record.trace['usage']['prompt_tokens']}+{record.trace['usage']['completion_tokens']} tokens" in page.text
    assert page.text.count('class="call"') == record.calls == 3
    (cand,) = re.findall(r'<tr class="candidate">(.*?)</tr>', page.text, re.S)
    assert "return x + 1" in cand and re.search(r'class="l hidden"><span class="pass">pass', cand)
    assert re.search(r'class="l public">repair1: <span class="pass">pass', cand)
    diffs = re.findall(r"<pre class='diff'>(.*?)</pre>", page.text, re.S)
    assert len(diffs) == 2
    assert "-    return x + 2" in diffs[0] and "+    return x + 3" in diffs[0]
    assert "-    return x + 3" in diffs[1] and "+    return x + 1" in diffs[1]
    other = client(runs).get("/problem", params={"run": "a", "id": "q1"})
    assert other.status_code == 200 and 'class="fail"' in other.text and "Repair rounds" not in other.text


async def test_search_view_plots_the_front_and_serves_each_configurations_yaml(runs):
    data = json.loads((runs / "search" / "pareto.json").read_text())
    page = client(runs).get("/search", params={"name": "search"})
    assert page.status_code == 200 and "new Chart" in page.text and "/static/chart.umd.min.js" in page.text
    assert [r["id"] for r in data["front"]] == re.findall(r'<tr data-id="(\w+)">', page.text)
    for row in data["evaluated"]:
        text = client(runs).get("/yaml.txt", params={"search": "search", "id": row["id"]}).text
        assert text == Config.model_validate(row["config"]).to_yaml(f"search-{row['id']}")
    chosen = client(runs).get("/yaml", params={"search": "search", "id": data["chosen"]["id"]})
    assert chosen.status_code == 200 and "n: 8" in chosen.text
    missing = client(runs).get("/yaml", params={"search": "search", "id": "nope"})
    assert missing.status_code == 404 and "is not in search run" in missing.text


async def test_a_deleted_run_is_a_clear_404_not_a_500(runs):
    c = client(runs)
    assert c.get("/run", params={"name": "a"}).status_code == 200
    shutil.rmtree(runs / "a")
    shutil.rmtree(runs / "search")
    for path, params in [("/run", {"name": "a"}), ("/problem", {"run": "a", "id": "q0"}), ("/events", {"run": "a"}),
                         ("/compare", [("run", "a"), ("run", "b")]), ("/search", {"name": "search"}),
                         ("/run", {"name": "../../etc"})]:  # fmt: skip
        page = c.get(path, params=params)
        assert page.status_code == 404, path
        assert "no longer exists" in page.text or "is not a run under" in page.text
    assert not (runs / "a").exists()  # reading never recreates it
    assert c.get("/problem", params={"run": "b", "id": "q99"}).status_code == 404


def test_a_running_eval_streams_its_progress_until_done(tmp_path):
    runs = tmp_path / "runs"
    problems = math_problems(4)
    store = RunStore(runs / "live")
    store.bind_config({"task": "adder", "arch": "single", "models": ["m"]})
    from thinktank.arch import load_architecture
    from thinktank.backends import ScriptedBackend
    from thinktank.engine import Engine

    def run(ps):
        engine = Engine({"m": ScriptedBackend(solver({2}))})
        asyncio.run(run_eval(engine, load_architecture("single", ["m"]), ps, store))

    run(problems[:1])
    store.set_meta("planned", 4)  # as a run of 4 problems, killed after one (or still going)
    page = client(runs).get("/run", params={"name": "live"})
    assert 'id="live"' in page.text and "EventSource" in page.text and '<span id="planned">4</span>' in page.text
    events = []
    with live_server(runs) as http, http.stream("GET", "/events", params={"run": "live"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if len(events) == 1:
                    run(problems)  # the rest finish while the page watches
    store.close()
    assert events[0]["done"] == 1 and events[0]["planned"] == 4 and not events[0]["finished"]
    assert events[-1] == {"done": 4, "planned": 4, "passed": 3, "tokens": events[-1]["tokens"], "finished": True}


async def test_the_api_key_is_checked_as_serve_does_and_a_browser_can_carry_it(runs):
    c = client(runs, api_key="s3cret")
    assert c.get("/").status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/static/chart.umd.min.js").status_code == 401
    bad = c.get("/", params={"key": "wrong"})
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    first = c.get("/", params={"key": "s3cret"})
    assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
    assert c.get("/run", params={"name": "a"}).status_code == 200  # the cookie carries the key from now on
    assert c.get("/health").status_code == 200


def test_the_vendored_chart_library_ships_with_its_license(tmp_path):
    c = client(tmp_path)
    js = c.get("/static/chart.umd.min.js")
    assert js.status_code == 200 and "Chart.js v4" in js.text[:200]
    assert "MIT" in c.get("/static/chart.js-LICENSE.md").text


async def test_a_live_view_is_told_when_its_run_is_deleted(tmp_path):
    root = tmp_path / "runs"
    await eval_run(root / "live", set(), count=2)
    store = RunStore(root / "live")
    store.set_meta("planned", 5)  # unfinished
    store.close()
    seen = []
    with live_server(root) as http, http.stream("GET", "/events", params={"run": "live"}) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                seen.append(line[7:])
                if line == "event: progress":
                    shutil.rmtree(root / "live")
    assert seen == ["progress", "gone"]
    assert not (root / "live").exists()


def test_runs_another_user_owns_are_read_without_writing_anything():
    """The dashboard only reads: an ordinary user can browse runs they cannot write (someone else's, a read-only mount)."""
    if reason := unprivileged.skip_reason():
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="thinktank-ui-"))  # not under pytest's 0700 tmp dir: the other user must enter it
    try:
        asyncio.run(eval_run(root / "a", A_WRONG))
        (root / "corrupt").mkdir()
        (root / "corrupt" / "results.sqlite").write_bytes(b"not a database" * 100)
        subprocess.run(["chmod", "-R", "a+rX,go-w", str(root)], check=True)
        before = sorted(p.name for p in (root / "a").iterdir())
        script = (
            "import sys; from pathlib import Path; from fastapi.testclient import TestClient;"
            "from thinktank.ui import UiSettings, create_app;"
            "c = TestClient(create_app(UiSettings(runs=Path(sys.argv[1]))));"
            "print(c.get('/').text); print(c.get('/problem', params={'run': 'a', 'id': 'q1'}).status_code)"
        )
        # a system Python with the checkout and our site-packages bind-mounted into the user's home, as theirs would be
        out = unprivileged.run_python(["-c", script, str(root)], timeout=120)
        assert out.returncode == 0, out.output
        assert '<td class="accuracy">75.0%</td>' in out.output and out.output.rstrip().endswith("200")
        assert "unreadable: results DB" in out.output and "file is not a database" in out.output
        assert sorted(p.name for p in (root / "a").iterdir()) == before
    finally:
        shutil.rmtree(root)


async def test_names_are_escaped_in_html_and_in_scripts(tmp_path):
    root = tmp_path / "runs"
    name = "x</script><script>alert(1)"
    await eval_run(root / name, set(), count=2)
    store = RunStore(root / name)
    store.set_meta("planned", 3)  # a live page: the name goes into its script too
    store.close()
    c = client(root)
    assert "<script>alert(1)" not in c.get("/").text
    page = c.get("/run", params={"name": name})
    assert page.status_code == 200 and "<script>alert(1)" not in page.text and "\\u003c/script>" in page.text
