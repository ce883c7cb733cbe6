"""Fixtures for the multiprocess runner's tests: a gate for held tasks, a fresh pool with test
settings, and clean-up of runs a test leaves going.

These tests start real worker processes through the public API. The pool is process-wide and
kept between tests (as in a program); a test that changes :func:`configure` gets a fresh pool
and shuts it down afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import woflo_plugins.multiprocess as mp

# Workers import a task's module by name, like any process pool that does not fork the caller:
# the repository root must be importable there whatever pytest's import mode is.
ROOT = str(Path(__file__).resolve().parents[3])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.woflo_plugins.multiprocess._support import Gate  # noqa: E402


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    """A gate for held tasks; released at teardown so no held task outlives its test."""
    path = tmp_path / "gate"
    path.mkdir()
    the_gate = Gate(path)
    try:
        yield the_gate
    finally:
        the_gate.release()


@pytest.fixture
def runs() -> Iterator[list[Any]]:
    """Append runs here: any still going at teardown is stopped (a failed test leaves none)."""
    started: list[Any] = []
    try:
        yield started
    finally:
        for run in started:
            run.stop()


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``woflo_plugins.multiprocess.configure`` on a fresh pool; shut down and reset after."""
    monkeypatch.setattr(mp, "_config", {})
    monkeypatch.delenv(mp.MAX_WORKERS_ENV, raising=False)
    monkeypatch.delenv(mp.IDLE_TIMEOUT_ENV, raising=False)
    mp.shutdown()
    try:
        yield mp.configure
    finally:
        mp.shutdown()
