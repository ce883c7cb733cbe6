"""Fixtures for the multiprocess runner's tests: a gate for held tasks.

These tests start real worker processes through the public API. The pool is process-wide and
kept between tests (as in a program); ``runs`` and ``configure`` (a fresh pool with test
settings) come from ``tests/woflo_plugins/conftest.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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
