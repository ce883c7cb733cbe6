"""``woflo ui`` in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium, over the history a real program made.

A missing browser fails these tests in CI (``CI`` or ``WOFLO_REQUIRE_BROWSER`` set; ``.ci/run``
installs it and sets the latter); elsewhere they are skipped, with the reason in the summary.
Each page is screenshotted into ``WOFLO_ARTIFACTS`` (default: ``.artifacts/`` at the top of
the checkout).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.woflo_plugins.multiprocess._support import run_script, script_env
from woflo import history

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("WOFLO_ARTIFACTS") or ROOT / ".artifacts")
CHROMIUM = os.environ.get("WOFLO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WOFLO_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 20.0

PROGRAM = """
import time
from woflo import allow_failure, task

@task
def load(i):
    return i * 10

@task(retries=1, retry_sleep_time=0)
def flaky(path):
    import os
    if not os.path.exists(path):
        open(path, "w").close()
        raise ConnectionError("the API hung up")
    return "second time lucky"

@task
def broken():
    raise ValueError("bad input: 42")

@task
def combine(a, b):
    return a + b

@task
def slow():
    time.sleep(60)

total = combine(load(1), load(2))
lucky = flaky({marker!r})
failed = broken()
downstream = combine(failed, 1)   # upstream_failed
stopped = slow()
assert total.get_result() == 30 and lucky.get_result() == "second time lucky"
failed.wait(); downstream.wait()
while stopped.attempts == 0:
    time.sleep(0.01)
stopped.stop()
"""


def _chrome() -> Any:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        reason = (
            f"the browser tests need Chromium and ChromeDriver, missing: {', '.join(missing)} "
            "(apt-get install chromium chromium-driver; .ci/run does)"
        )
        if os.environ.get("WOFLO_REQUIRE_BROWSER") or os.environ.get("CI"):
            pytest.fail(reason)  # (CI: a missing browser is a failure, never a skip)
        pytest.skip(reason)  # (elsewhere: said in the summary, -ra)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = _chrome()
    try:
        yield driver
    finally:
        driver.quit()


class Dashboard:
    """A ``woflo ui`` process on a free port, over ``home``'s history."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.process = subprocess.Popen(
            [sys.executable, "-m", "woflo", "ui", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=script_env({"WOFLO_HOME": str(home)}),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert "serving http://" in line, line + self.process.stderr.read()  # type: ignore[union-attr]
        self.url = line.split("serving ")[1].split()[0]
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])

    def get(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """The status and the decoded JSON body of a raw request (no client-side cleanup of
        the path, unlike a browser)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            body = response.read()
            kind = response.getheader("Content-Type", "")
        finally:
            connection.close()
        return response.status, json.loads(body) if "json" in kind else body.decode()

    def close(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=WAIT)  # (and its pipes closed)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A dashboard over the history of one real program: completed, retried, failed (with a
    traceback), upstream-failed and stopped runs."""
    work = tmp_path_factory.mktemp("ui")
    home = work / "home"
    script = work / "pipeline.py"
    script.write_text(textwrap.dedent(PROGRAM.format(marker=str(work / "flaky-marker"))))
    result = run_script(script, env={"WOFLO_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    dashboard = Dashboard(home)
    try:
        yield dashboard
    finally:
        dashboard.close()


def _open(browser: Any, url: str, view: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.execute_script("if (document.body) document.body.dataset.rendered = ''")
    browser.get(url)  # (a new hash only: the page draws the view again, after this returns)
    WebDriverWait(browser, WAIT).until(
        lambda driver: driver.execute_script("return document.body.dataset.rendered") == view
    )


def _shoot(browser: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ui-{name}.png"
    browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # (a page was drawn)
    return path


def _states(browser: Any) -> list[str]:
    """The states of the rows shown (read at once: the live refresh replaces rows)."""
    return sorted(
        browser.execute_script(
            "return [...document.querySelectorAll('#runs-body tr[data-state]')]"
            ".map(row => row.dataset.state)"
        )
    )


def test_the_runs_table_lists_every_run_and_filters(browser: Any, recorded: Dashboard) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open(browser, recorded.url, "runs")
    expected = sorted(r["state"] for r in history.runs(path=recorded.home / "history.sqlite3"))
    assert _states(browser) == expected
    assert {"completed", "failed", "upstream_failed", "stopped"} <= set(expected)
    text = browser.find_element(By.ID, "runs").text
    assert "ValueError('bad input: 42')" in text
    _shoot(browser, "runs")
    Select(browser.find_element(By.ID, "filter-state")).select_by_value("failed")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, WAIT).until(lambda driver: _states(driver) == ["failed"])
    assert "#/runs?state=failed" in browser.current_url
    Select(browser.find_element(By.ID, "filter-task")).select_by_value("load")
    WebDriverWait(browser, WAIT).until(
        lambda driver: driver.find_elements(By.ID, "no-match")
    )  # no failed run of load


def test_the_run_page_shows_attempts_tracebacks_and_links(
    browser: Any, recorded: Dashboard
) -> None:
    from selenium.webdriver.common.by import By

    db = recorded.home / "history.sqlite3"
    [flaky] = history.runs(task="flaky", path=db)
    _open(browser, f"{recorded.url}#/runs/{flaky['run_id']}", "run")
    rows = browser.find_elements(By.CSS_SELECTOR, "#attempts tr[data-attempt]")
    assert [row.get_attribute("data-attempt") for row in rows] == ["1", "2"]
    tracebacks = browser.find_elements(By.CSS_SELECTOR, "pre.traceback")
    assert len(tracebacks) == 1
    assert "Traceback (most recent call last)" in tracebacks[0].text
    assert "ConnectionError: the API hung up" in tracebacks[0].text
    _shoot(browser, "run")
    [combined] = [r for r in history.runs(task="combine", path=db) if r["state"] == "completed"]
    _open(browser, f"{recorded.url}#/runs/{combined['run_id']}", "run")
    program_link = browser.find_element(By.CSS_SELECTOR, "a[href^='#/programs/']")
    assert program_link.get_attribute("href").endswith(f"#/programs/{combined['program']['id']}")
    upstream = browser.find_element(By.ID, "upstream").find_elements(By.TAG_NAME, "a")
    assert len(upstream) == 2
    upstream[0].click()  # to the upstream run, whose downstream is the combined one
    from selenium.webdriver.support.ui import WebDriverWait

    downstream = "return document.getElementById('downstream')?.textContent || ''"
    WebDriverWait(browser, WAIT).until(  # (read at once: the page is being drawn again)
        lambda driver: combined["run_id"] in driver.execute_script(downstream)
    )


def test_the_timeline_draws_a_bar_per_attempt_in_a_lane_per_worker(
    browser: Any, recorded: Dashboard
) -> None:
    from selenium.webdriver.common.by import By

    db = recorded.home / "history.sqlite3"
    [program] = history.programs(path=db)
    data = history.timeline(program["program_id"], path=db)
    assert data is not None
    _open(browser, f"{recorded.url}#/programs/{program['program_id']}", "timeline")
    bars = browser.find_elements(By.CSS_SELECTOR, "#timeline rect.bar")
    assert (
        len(bars)
        == len(data["attempts"])
        == browser.execute_script("return window.wofloRendered.bars")
    )
    lanes = {a["pid"] for a in data["attempts"]}
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline rect.lane")) == len(lanes)
    assert {b.get_attribute("class") for b in bars} >= {"bar completed", "bar failed"}
    width = browser.find_element(By.ID, "timeline").get_attribute("width")
    browser.find_element(By.ID, "zoom-in").click()
    assert float(browser.find_element(By.ID, "timeline").get_attribute("width")) > float(width)
    browser.find_element(By.ID, "zoom-reset").click()
    summary = {
        row.get_attribute("data-task")
        for row in browser.find_elements(By.CSS_SELECTOR, "#summary tr[data-task]")
    }
    assert summary == {"load", "combine", "flaky", "broken", "slow"}
    _shoot(browser, "timeline")


def test_no_history_yet_says_how_runs_get_recorded_then_shows_them_live(
    browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    home = tmp_path / "empty-home"
    dashboard = Dashboard(home)
    try:
        _open(browser, dashboard.url, "empty")
        text = browser.execute_script(  # (read at once: it looks again every 2 s)
            "return document.getElementById('empty').innerText"
        )
        assert "No runs recorded yet" in text
        assert "WOFLO_HISTORY=off" in text
        assert str(home) in text
        _shoot(browser, "empty")
        script = tmp_path / "hello.py"
        script.write_text(
            "from woflo import task\n"
            "hello = task(lambda name: f'hello {name}', name='hello')\n"
            "print(hello('world').get_result())\n"
        )
        assert run_script(script, env={"WOFLO_HOME": str(home)}).returncode == 0
        WebDriverWait(browser, WAIT).until(lambda driver: _states(driver) == ["completed"])
        assert "hello" in browser.find_element(By.ID, "runs").text  # no reload: it looked again
    finally:
        dashboard.close()


def test_bad_requests_get_4xx_answers_never_a_traceback(recorded: Dashboard) -> None:
    assert recorded.get("/api/runs?limit=0")[0] == 400
    assert recorded.get("/api/runs?limit=abc")[0] == 400
    assert recorded.get("/api/runs?state=nope")[0] == 400
    assert recorded.get("/api/runs?since=-1")[0] == 400
    assert recorded.get("/api/runs?bogus=1")[0] == 400
    assert recorded.get("/api/runs?%zz")[0] == 400
    assert recorded.get("/api/runs/no-such-run")[0] == 404
    assert recorded.get("/api/programs/nope/timeline")[0] == 404
    for traversal in ("/static/../../pyproject.toml", "/static/%2e%2e/app.js", "/../etc/passwd"):
        status, body = recorded.get(traversal)
        assert status == 404, traversal
        assert "Traceback" not in json.dumps(body)
    assert recorded.get("/api/runs", method="POST")[0] == 405
    assert recorded.get("/api/runs", method="DELETE")[0] == 405
    assert recorded.get("/api/runs", method="OPTIONS") == (
        405,
        {"error": "the dashboard is read-only: GET and HEAD only"},
    )
    assert recorded.get("/api/runs?limit=%C2%B2")[0] == 400  # (a digit int() refuses)
    # a page of another site whose name was rebound to 127.0.0.1 (DNS rebinding)
    assert recorded.get("/api/runs", headers={"Host": "evil.example.com"})[0] == 403
    assert recorded.get("/api/runs", headers={"Host": f"localhost:{recorded.port}"})[0] == 200


def test_reading_never_changes_the_history(recorded: Dashboard, tmp_path: Path) -> None:
    import hashlib

    def fingerprint() -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(recorded.home.glob("history.sqlite3*"))
        }

    before = fingerprint()
    db = recorded.home / "history.sqlite3"
    [program] = history.programs(path=db)
    for path in (
        "/api/status",
        "/api/runs",
        "/api/tasks",
        "/api/programs",
        f"/api/programs/{program['program_id']}/timeline",
        f"/api/runs/{history.runs(path=db)[0]['run_id']}",
    ):
        assert recorded.get(path)[0] == 200, path
    assert fingerprint() == before
    old = tmp_path / "old" / "history.sqlite3"  # a history of an older schema: said, not migrated
    old.parent.mkdir()
    import sqlite3

    connection = sqlite3.connect(old)
    connection.execute("PRAGMA user_version = 2")
    connection.close()
    data = old.read_bytes()
    with pytest.raises(history.HistoryError, match=r"schema version 2.*bring it up to date"):
        history.runs(path=old)
    assert old.read_bytes() == data


def test_the_api_pages_results(recorded: Dashboard) -> None:
    status, first = recorded.get("/api/runs?limit=2")
    assert status == 200
    assert (len(first["runs"]), first["next_offset"]) == (2, 2)
    every = recorded.get("/api/runs?limit=1000")[1]["runs"]
    rest = recorded.get(f"/api/runs?limit=1000&offset={first['next_offset']}")[1]
    assert [r["run_id"] for r in first["runs"] + rest["runs"]] == [r["run_id"] for r in every]
    assert rest["next_offset"] is None


def test_binding_beyond_this_machine_warns(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "woflo", "ui", "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env({"WOFLO_HOME": str(tmp_path)}),
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        assert "serving http://0.0.0.0:" in process.stdout.readline()
        assert "anyone who can reach this port can read the run history" in (
            process.stderr.readline()
        )
    finally:
        process.terminate()
        process.communicate(timeout=WAIT)
    bad = subprocess.run(
        [sys.executable, "-m", "woflo", "ui", "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=script_env(),
    )
    assert bad.returncode == 2
    assert "takes a port number from 0 to 65535" in bad.stderr
