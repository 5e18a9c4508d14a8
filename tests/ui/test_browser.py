"""The dashboard in a real browser: Debian's headless chromium driven by Selenium against the real `thinktank ui` server.

Each view is loaded and its DOM checked against the results DBs; screenshots go to the test's tmp_path (and to
$THINKTANK_UI_SCREENSHOTS, e.g. docs/img, when set, which is how docs/ui.md's pictures are made).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from thinktank.eval.metrics import paired_difference
from thinktank.eval.runner import run_eval, summarize
from thinktank.eval.store import RunStore
from thinktank.search.space import Config

from .runs import eval_run, math_problems, repair_run, search_run, solver

pytestmark = pytest.mark.integration

CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
A_WRONG, B_WRONG = {1, 3}, {3, 5, 6}


def wait_for(what, check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"

    async def build():
        await eval_run(root / "a", A_WRONG)
        await eval_run(root / "b", B_WRONG, arch="sample-8-vote")
        await repair_run(root / "rep")

    asyncio.run(build())
    search_run(root / "search")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "results.sqlite").write_bytes(b"not a database" * 100)
    return root


@pytest.fixture
def server(runs):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "thinktank.cli", "ui", "--runs", str(runs), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("the ui server", lambda: proc.poll() is None and httpx.get(f"{base}/health").status_code == 200)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip("no browser: install Debian's chromium and chromium-driver (scripts/ensure_browser.sh)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def shoot(driver, tmp_path, name, resize=True):
    if resize:  # the whole page (a resize redraws a chart, so the search view is shot at its loaded size)
        driver.set_window_size(1280, max(700, min(2400, driver.execute_script("return document.body.scrollHeight") + 40)))
    path = tmp_path / f"ui-{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 5000
    if os.environ.get("THINKTANK_UI_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["THINKTANK_UI_SCREENSHOTS"]) / path.name)


def summary(run_dir):
    store = RunStore(run_dir)
    try:
        return summarize(store)
    finally:
        store.close()


def test_every_view_in_a_real_browser(runs, server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d = browser
    # 1. runs list: the numbers are the results DBs'; the corrupt run is listed with its reason; filters hide rows
    d.get(server + "/")
    for name in ("a", "b", "rep"):
        s = summary(runs / name)
        row = d.find_element(By.CSS_SELECTOR, f'tr.run[data-run="{name}"]')
        assert row.find_element(By.CLASS_NAME, "accuracy").text == f"{100 * s['accuracy']:.1f}%"
        assert row.find_element(By.CLASS_NAME, "ci").text == f"{100 * s['ci95'][0]:.1f}–{100 * s['ci95'][1]:.1f}%"
        assert row.find_element(By.CLASS_NAME, "tpp").text == f"{s['tokens_per_problem']:.1f}"
    assert "file is not a database" in d.find_element(By.CSS_SELECTOR, 'tr[data-run="corrupt"]').text
    shoot(d, tmp_path, "runs")
    Select(d.find_element(By.CSS_SELECTOR, '[data-filter="arch"]')).select_by_value("sample-8-vote")
    visible = [r.get_attribute("data-run") for r in d.find_elements(By.CSS_SELECTOR, "tr.run") if r.is_displayed()]
    assert visible == ["b"]
    Select(d.find_element(By.CSS_SELECTOR, '[data-filter="arch"]')).select_by_value("")
    for name in ("a", "b"):
        d.find_element(By.CSS_SELECTOR, f'input[value="{name}"]').click()
    d.find_element(By.ID, "compare").click()

    # 2. comparison: paired delta and McNemar's p as metrics.paired_difference computes them; won/lost link to problems
    wait_for("the comparison", lambda: d.find_elements(By.ID, "comparison"))
    p = paired_difference([i not in A_WRONG for i in range(8)], [i not in B_WRONG for i in range(8)])
    row = d.find_element(By.CSS_SELECTOR, 'tr[data-run="b"]')
    assert row.find_element(By.CLASS_NAME, "delta").text == f"{100 * p.delta:+.1f}"
    assert row.find_element(By.CLASS_NAME, "p").text == f"{p.p_value:.3g}"
    assert row.find_element(By.CLASS_NAME, "lost").text == "2: q5, q6"
    shoot(d, tmp_path, "compare")
    row.find_element(By.CSS_SELECTOR, ".won a").click()

    # 3. a problem's view (reached from the comparison), then the repaired problem with its diffs
    wait_for("the problem view", lambda: d.find_elements(By.ID, "tree"))
    assert d.find_element(By.TAG_NAME, "h1").text == "problem q1" and "pass" in d.find_element(By.ID, "verdict").text
    d.get(server + "/run?name=rep")
    d.find_element(By.LINK_TEXT, "inc/0").click()
    wait_for("the repair view", lambda: d.find_elements(By.CSS_SELECTOR, "pre.diff"))
    diffs = [e.text for e in d.find_elements(By.CSS_SELECTOR, "pre.diff")]
    assert "+    return x + 3" in diffs[0] and "+    return x + 1" in diffs[1]
    hidden = d.find_element(By.CSS_SELECTOR, "tr.candidate td.hidden").text
    assert hidden == "pass"
    shoot(d, tmp_path, "problem")

    # 4. search: the Pareto front is drawn from pareto.json; hovering a point shows its configuration, clicking opens its YAML
    data = json.loads((runs / "search" / "pareto.json").read_text())
    d.set_window_size(1280, 1150)
    d.get(server + "/search?name=search")
    wait_for(
        "the chart", lambda: d.execute_script("return window.paretoChart && window.paretoChart.getDatasetMeta(0).data.length")
    )
    plotted = d.execute_script("return window.paretoChart.data.datasets[0].data.map(p => p.id)")
    assert plotted == [r["id"] for r in data["front"]]
    target = data["front"][1]
    canvas = d.find_element(By.ID, "pareto")
    x, y, w, h = d.execute_script(
        "const c = window.paretoChart, p = c.getDatasetMeta(0).data[1];"
        " return [p.x, p.y, c.canvas.clientWidth, c.canvas.clientHeight]"
    )
    ActionChains(d).move_to_element_with_offset(canvas, int(x - w / 2), int(y - h / 2)).perform()
    tip = wait_for("the tooltip", lambda: d.execute_script(
        "const t = window.paretoChart.tooltip; return t.opacity > 0 && t.body && t.body.map(b => b.lines.join(' ')).join(' ')"))  # fmt: skip
    assert target["id"] in tip and target["label"] in tip
    shoot(d, tmp_path, "search", resize=False)
    ActionChains(d).click().perform()  # where the pointer is: on the point
    wait_for("the YAML page", lambda: d.find_elements(By.ID, "yaml"))
    expected = Config.model_validate(target["config"]).to_yaml(f"search-{target['id']}")
    assert d.find_element(By.ID, "yaml").text.strip() == expected.strip()
    shoot(d, tmp_path, "yaml")


def test_live_progress_and_a_run_deleted_while_shown(runs, server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from thinktank.arch import load_architecture
    from thinktank.backends import ScriptedBackend
    from thinktank.engine import Engine

    d = browser
    store = RunStore(runs / "live")
    store.bind_config({"task": "adder", "arch": "single", "models": ["m"]})
    problems = math_problems(6)

    def run(ps):
        asyncio.run(run_eval(Engine({"m": ScriptedBackend(solver({2}))}), load_architecture("single", ["m"]), ps, store))

    run(problems[:2])
    store.set_meta("planned", 6)  # as a run of 6 problems that has done 2 so far
    d.get(server + "/run?name=live")
    assert d.find_element(By.ID, "done").text == "2" and d.find_element(By.ID, "state").text == "live"
    shoot(d, tmp_path, "live")
    run(problems)  # the other four finish while the page is open
    store.close()
    wait_for("the live update", lambda: d.find_element(By.ID, "state").text == "finished")
    assert d.find_element(By.ID, "done").text == "6" and d.find_element(By.ID, "acc").text == "83.3%"
    assert d.find_element(By.ID, "bar").get_attribute("value") == "6"

    d.get(server + "/run?name=b")
    assert d.find_element(By.ID, "accuracy").text == "62.5%"
    shutil.rmtree(runs / "b")
    d.refresh()
    text = d.find_element(By.ID, "message").text
    assert d.find_element(By.TAG_NAME, "h1").text == "not found" and "run 'b' no longer exists" in text
    shoot(d, tmp_path, "gone")
