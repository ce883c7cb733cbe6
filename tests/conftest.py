"""Fixtures shared by the whole suite.

Every test gets a fresh plugin system (``plugins``: woflo.testing's ``woflo_plugin_system``,
built from the ``woflo`` entry points as in production and installed as the process-wide one for
the test's duration, after the caller's woflo settings are cleared); tests register their own
plugins on it, never on a global manager. ``recorder`` is woflo.testing's ``woflo_recorder``: a
:class:`~woflo.testing.HookRecorder` registered on it, recording every lifecycle hook call.
Unregistered recorders (for ``@task(plugins=[...])`` and the like) are plain ``HookRecorder()``.

``WOFLO_HOME`` points at a temporary directory for the whole session, before anything imports
woflo, and scripts the tests run inherit it: no test reads or writes the real per-user state
directory. Tests that look at the run history get one of their own (``history_home``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import woflo_plugins.logging
from woflo.plugins import PluginSystem
from woflo.testing import HookRecorder

os.environ["WOFLO_HOME"] = tempfile.mkdtemp(prefix="woflo-tests-home-")

WOFLO_ENV = (
    "WOFLO_DISABLE_PLUGINS",
    "WOFLO_LOG_LEVEL",
    "WOFLO_LOG_FORMAT",
    "WOFLO_HISTORY",
    "WOFLO_HISTORY_DAYS",
    "WOFLO_HISTORY_MAX_RUNS",
    "WOFLO_CACHE_MAX_BYTES",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the caller's woflo settings."""
    for name in WOFLO_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def plugins(_clean_env: None, woflo_plugin_system: PluginSystem) -> PluginSystem:
    """woflo.testing's fresh plugin system, for every test, loaded once the env is clean."""
    return woflo_plugin_system


@pytest.fixture(autouse=True)
def _fresh_log_emitter() -> None:
    """The logging plugin caches its level and logger: give each test a new one."""
    woflo_plugins.logging.reset()


@pytest.fixture
def structlog_reset() -> Iterator[None]:
    """Undo any ``structlog.configure`` a test (or ``capture_logs``) made."""
    import structlog

    structlog.reset_defaults()
    try:
        yield
    finally:
        structlog.reset_defaults()


@pytest.fixture
def recorder(woflo_recorder: HookRecorder) -> HookRecorder:
    """woflo.testing's :class:`~woflo.testing.HookRecorder`, registered on ``plugins``."""
    return woflo_recorder


@pytest.fixture
def make_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Path]]:
    """Install a real (unpacked) distribution declaring ``woflo`` entry points.

    ``make_distribution(name, version, entry_points={"ep": "module"}, modules={"module": src})``
    writes ``<name>-<version>.dist-info/{METADATA,entry_points.txt}`` and the modules into a new
    directory put first on ``sys.path``, so ``importlib.metadata`` finds it like any installed
    distribution. The modules are forgotten from ``sys.modules`` afterwards.
    """
    written: list[str] = []

    def make(
        name: str,
        version: str = "1.0",
        *,
        entry_points: dict[str, str],
        modules: dict[str, str],
    ) -> Path:
        site = tmp_path / f"site-{name}"
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[woflo]\n{lines}", encoding="utf-8")
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            written.append(module)
        monkeypatch.syspath_prepend(str(site))
        return site

    yield make
    for module in written:
        sys.modules.pop(module, None)


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Any]:
    """A gate for held tasks (:class:`tests.woflo_plugins.multiprocess._support.Gate`); released
    at teardown so no held task outlives its test."""
    from tests.woflo_plugins.multiprocess._support import Gate

    path = tmp_path / "gate"
    path.mkdir()
    the_gate = Gate(path)
    try:
        yield the_gate
    finally:
        the_gate.release()


@pytest.fixture
def history_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``WOFLO_HOME`` of this test's own, the history plugin reset to write there."""
    import woflo_plugins.history

    home = tmp_path / "woflo-home"
    woflo_plugins.history.reset()
    monkeypatch.setenv("WOFLO_HOME", str(home))
    woflo_plugins.history.reset()
    try:
        yield home
    finally:
        woflo_plugins.history.reset()


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``WOFLO_HOME`` of this test's own for the result cache (values stored before and
    during the test are flushed first, so none lands in another test's cache)."""
    import woflo_plugins.cache

    assert woflo_plugins.cache.flush(30)
    home = tmp_path / "woflo-home"
    monkeypatch.setenv("WOFLO_HOME", str(home))
    try:
        yield home
    finally:
        assert woflo_plugins.cache.flush(30)
