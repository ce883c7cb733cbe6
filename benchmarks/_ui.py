"""Workloads of ``woflo ui`` (imported by ``run.py``): how long the runs page and the timeline
of a 10,000-run program take to render in headless Chromium (what ``window.wofloRendered``
says: from the page's route to its last element drawn, the API's answers included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

System = Callable[[], float]
CHROMIUM = os.environ.get("WOFLO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WOFLO_CHROMEDRIVER", "/usr/bin/chromedriver")


def render_times(n: int, skipped: dict[str, str]) -> dict[str, System]:
    """Seconds to render the runs page and the timeline of one program of ``n`` runs."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        skipped["woflo ui"] = "selenium not installed"
        return {}
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        skipped["woflo ui"] = "chromium and chromium-driver not installed"
        return {}
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    home = Path(tempfile.mkdtemp(prefix="woflo-bench-ui-"))
    script = home / "program.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from woflo import task
            work = task(lambda i: i, name="work")
            for group in range(0, {n}, 1000):
                for run in work.map(range(group, min({n}, group + 1000))):
                    run.get_result()
            """
        )
    )
    env = {**os.environ, "WOFLO_HOME": str(home)}
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=600)
    server = subprocess.Popen(
        [sys.executable, "-m", "woflo", "ui", "--port", "0"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert server.stdout is not None
    url = server.stdout.readline().split("serving ")[1].split()[0]
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    driver: Any = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    import atexit

    def close() -> None:
        driver.quit()
        server.terminate()
        server.communicate(timeout=10)

    atexit.register(close)
    from woflo import history

    [program] = history.programs(path=home / "history.sqlite3")

    def rendered(fragment: str, view: str) -> System:
        def measure() -> float:
            driver.get("about:blank")
            driver.get(url + fragment)
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return document.body.dataset.rendered") == view
            )
            return float(driver.execute_script("return window.wofloRendered.ms")) / 1000

        return measure

    return {
        f"runs page ({n:,} runs in the history)": rendered("#/runs", "runs"),
        f"timeline of a {n:,}-run program": rendered(
            f"#/programs/{program['program_id']}", "timeline"
        ),
    }
