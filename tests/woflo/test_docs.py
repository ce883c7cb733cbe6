"""The plugin author's guide covers every hook, and the README keeps its two commands."""

from __future__ import annotations

from pathlib import Path

from woflo.hookspecs import hook_names as _hook_names

ROOT = Path(__file__).resolve().parents[2]


def test_every_hook_is_in_the_plugin_guide() -> None:
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    missing = [name for name in _hook_names() if f"`{name}`" not in guide]
    assert missing == []


def test_readme_has_the_demo_and_test_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python3 -m venv .venv" in readme
    assert "examples/quickstart.py" in readme
    lines = readme.splitlines()
    test_command = lines[lines.index("# the tests") + 1]
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1] == test_command  # CI ends with the README's own command
