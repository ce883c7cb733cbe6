"""Fixtures for the plugins' tests that start real runs: clean-up of runs a test leaves going,
and the multiprocess pool with test settings.

The pool is process-wide and kept between tests (as in a program); a test that changes
:func:`configure` gets a fresh pool and shuts it down afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import woflo_plugins.multiprocess as mp


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
    monkeypatch.delenv(mp.MAX_WORKERS_ENV, raising=False)
    monkeypatch.delenv(mp.IDLE_TIMEOUT_ENV, raising=False)
    mp.reset()
    try:
        yield mp.configure
    finally:
        mp.reset()
