"""``woflo plugins [--json] [--hook NAME]`` and ``woflo --version``, in process and as commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from woflo._cli import main
from woflo.plugins import PluginSystem, set_plugin_system

BUILTINS = {"sequential", "multiprocess", "retries", "timeouts", "logging"}


def _command(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as a command without the caller's woflo settings (plus ``env``); bounded."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WOFLO_")}
    clean["WOFLO_HOME"] = os.environ["WOFLO_HOME"]  # (the suite's own)
    return subprocess.run(
        argv, capture_output=True, text=True, env=clean | (env or {}), timeout=60, check=False
    )


def _plugins_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["plugins", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_plugins_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in BUILTINS:
        [line] = [line for line in lines if line.startswith(f"{name} ")]
        assert "[built-in]" in line
        assert f"woflo {version('woflo')}" in line
        assert f"(woflo_plugins.{name})" in line
    assert "    runners: sequential" in lines
    assert any(line.startswith("    options: retries, retry_sleep_time") for line in lines)
    assert any(line.startswith("    hooks: ") and "woflo_retry_delay" in line for line in lines)


def test_plugins_json(capsys: pytest.CaptureFixture[str]) -> None:
    data = _plugins_json(capsys)
    assert data["version"] == 1
    rows = {row["name"]: row for row in data["plugins"]}
    assert set(rows) >= BUILTINS
    for name in BUILTINS:
        row = rows[name]
        assert row["distribution"] == "woflo"
        assert row["version"] == version("woflo")
        assert row["builtin"] is True
        assert row["module"] == f"woflo_plugins.{name}"
        assert row["entry_point"] == f"woflo_plugins.{name}"
        assert isinstance(row["hooks"], list)
        assert row["hooks"] == sorted(row["hooks"])
        assert all(hook.startswith("woflo_") for hook in row["hooks"])
    assert rows["sequential"]["runners"] == ["sequential"]
    assert "woflo_add_runners" in rows["sequential"]["hooks"]
    assert rows["retries"]["options"][:2] == ["retries", "retry_sleep_time"]
    assert rows["timeouts"]["options"] == ["timeout", "total_timeout"]
    assert rows["retries"]["hooks"] == ["woflo_add_options", "woflo_retry_delay"]
    assert "woflo_run_finished" in rows["logging"]["hooks"]


def test_plugins_hook_filters(capsys: pytest.CaptureFixture[str]) -> None:
    data = _plugins_json(capsys, "--hook", "woflo_retry_delay")
    names = [row["name"] for row in data["plugins"]]
    assert "retries" in names
    assert "sequential" not in names
    assert "logging" not in names
    assert all("woflo_retry_delay" in row["hooks"] for row in data["plugins"])
    assert main(["plugins", "--hook", "woflo_add_runners"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sequential ") or "\nsequential " in out
    assert "retries " not in out


def test_plugins_unknown_hook_lists_the_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["plugins", "--hook", "woflo_nope"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown hook 'woflo_nope'" in err
    assert "woflo_retry_delay" in err


def test_plugins_when_none_are_loaded(capsys: pytest.CaptureFixture[str]) -> None:
    set_plugin_system(PluginSystem.empty())
    assert main(["plugins"]) == 0
    assert capsys.readouterr().out == "no plugins loaded\n"
    assert _plugins_json(capsys)["plugins"] == []


def test_plugins_lists_a_third_party_plugin(
    capsys: pytest.CaptureFixture[str], make_distribution: Any
) -> None:
    make_distribution(
        "acme-metrics",
        "2.0",
        entry_points={"acme": "acme_metrics_cli"},
        modules={
            "acme_metrics_cli": """
                from woflo import hookimpl

                @hookimpl
                def woflo_run_finished(run):
                    pass
            """
        },
    )
    set_plugin_system(None)  # reload from the entry points on next use
    row = {r["name"]: r for r in _plugins_json(capsys)["plugins"]}["acme"]
    assert row["distribution"] == "acme-metrics"
    assert row["version"] == "2.0"
    assert row["builtin"] is False
    assert row["hooks"] == ["woflo_run_finished"]
    rows = _plugins_json(capsys)["plugins"]
    assert rows[-1]["name"] == "acme"  # built-ins first
    assert main(["plugins"]) == 0
    assert "acme  [third-party]  acme-metrics 2.0  (acme_metrics_cli)" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert "acme: acme-metrics 2.0" in capsys.readouterr().out


def test_a_broken_plugin_fails_the_command_clearly(
    capsys: pytest.CaptureFixture[str], make_distribution: Any
) -> None:
    make_distribution(
        "acme-broken",
        entry_points={"broken": "acme_broken_cli"},
        modules={"acme_broken_cli": "import acme_missing_dependency\n"},
    )
    set_plugin_system(None)
    assert main(["plugins"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("woflo: woflo plugin 'broken'")
    assert "WOFLO_DISABLE_PLUGINS=broken" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"woflo {version('woflo')}\n"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "plugins" in capsys.readouterr().out


def test_python_m_woflo_plugins() -> None:
    result = _command(sys.executable, "-m", "woflo", "plugins", "--json")
    assert result.returncode == 0, result.stderr
    names = {row["name"] for row in json.loads(result.stdout)["plugins"]}
    assert names >= BUILTINS


def test_python_m_woflo_respects_disabled_plugins() -> None:
    result = _command(
        sys.executable, "-m", "woflo", "plugins", env={"WOFLO_DISABLE_PLUGINS": "logging"}
    )
    assert result.returncode == 0, result.stderr
    assert "retries  [built-in]" in result.stdout
    assert "logging" not in result.stdout


def test_the_woflo_command() -> None:
    script = Path(sysconfig.get_path("scripts")) / "woflo"
    assert script.exists(), f"the console script is not installed at {script}"
    result = _command(str(script), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"woflo {version('woflo')}"
