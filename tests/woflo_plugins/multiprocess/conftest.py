"""Fixtures for the multiprocess runner's tests: a gate for held tasks.

These tests start real worker processes through the public API. The pool is process-wide and
kept between tests (as in a program); ``runs`` and ``configure`` (a fresh pool with test
settings) come from ``tests/woflo_plugins/conftest.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Workers import a task's module by name, like any process pool that does not fork the caller:
# the repository root must be importable there whatever pytest's import mode is.
ROOT = str(Path(__file__).resolve().parents[3])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
