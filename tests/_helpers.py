"""Helpers the whole suite shares: bounded waits, pid files, and whether processes live.

They run in the test process. Worker-side code may import this module too (it imports only the
standard library), but nothing here is meant to run there. Every wait is bounded, so a bug shows
up as a failure, never as a hung test run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TIMEOUT = 20.0
"""Default bound on every wait here: a hang fails the test instead of blocking the run."""


def wait_for(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.005)


def read_pid(path: Path, timeout: float = TIMEOUT) -> int:
    """The pid a task wrote to ``path`` (written atomically), waiting for it to appear."""
    wait_for(path.exists, timeout, f"{path.name} to be written")
    return int(path.read_text())


def pid_exists(pid: int) -> bool:
    """Whether ``pid`` names a process at all: a zombie (dead, not reaped yet) counts."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead: it runs nothing)."""
    if not pid_exists(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # the read raced the process's exit
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_gone(pids: Iterable[int], timeout: float = TIMEOUT) -> None:
    """Wait until none of ``pids`` is alive; fail naming the survivors."""
    remaining = set(pids)
    deadline = time.monotonic() + timeout
    while alive := {p for p in remaining if pid_alive(p)}:
        if time.monotonic() > deadline:
            raise AssertionError(f"processes still alive after {timeout} s: {sorted(alive)}")
        time.sleep(0.005)


def children_of(ppid: int) -> set[int]:
    """Pids whose parent is ``ppid`` (zombies included), read from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
            found.add(int(entry))
    return found


class Keep(logging.Handler):
    """A logging handler that keeps every record it is given, at any level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
