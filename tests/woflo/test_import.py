"""``import woflo`` is cheap: it loads no plugin and not structlog (checked in a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("WOFLO_")}
        | {"WOFLO_HOME": os.environ["WOFLO_HOME"]},
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import woflo",
        "import woflo.runners",
        "from woflo import task, BaseTaskRun, hookimpl, RunState",
        "from woflo.runners import BaseTaskRun",
        "import woflo.errors, woflo.hookspecs",
    ],
)
def test_import_loads_no_plugin_and_not_structlog(code: str) -> None:
    modules = _modules_after(code)
    assert "woflo" in modules
    assert "structlog" not in modules
    assert not {m for m in modules if m.split(".")[0] == "woflo_plugins"}
    assert "woflo._cli" not in modules


def test_plugins_load_on_first_use() -> None:
    modules = _modules_after("from woflo.runners import SequentialTaskRun")
    assert "woflo_plugins.sequential" in modules
    assert "woflo_plugins.retries" in modules
    assert "structlog" not in modules  # the logging plugin imports it only to write an event
    assert "woflo_plugins.history" in modules
    assert "sqlite3" not in modules  # the history's writer imports it, in its own thread
    assert "importlib.metadata" not in modules  # (entry points read directly: 20-30 ms less)


def test_unknown_runner_name_lists_the_registered_ones() -> None:
    import woflo.runners

    with pytest.raises(AttributeError, match=r"no runner 'NopeTaskRun'.*SequentialTaskRun"):
        woflo.runners.NopeTaskRun  # noqa: B018
    assert "SequentialTaskRun" in dir(woflo.runners)
    assert "BaseTaskRun" in dir(woflo.runners)


def test_version_attribute() -> None:
    from importlib.metadata import version

    import woflo

    assert woflo.__version__ == version("woflo")
    with pytest.raises(AttributeError):
        woflo.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    assert sorted(woflo.__all__) == woflo.__all__
