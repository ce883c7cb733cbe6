"""Progress of many runs on stderr: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from typing import IO, Any

from woflo._rules import deadline_after, seconds_left
from woflo._types import RunState

_ORDER = [state.value for state in RunState]
_WIDTH = 30
TERMINAL_EVERY = 0.1
"""Seconds between redraws of the bar on a terminal (at most)."""
LINES_EVERY = 10.0
"""Seconds between lines when stderr is not a terminal (a log file, CI)."""


class Progress:
    """Counts of ``runs`` by state, drawn on ``file``: redrawn in place on a terminal (at most
    every :data:`TERMINAL_EVERY` s), else a line at most every :data:`LINES_EVERY` s; a last
    line on :meth:`close`."""

    def __init__(self, runs: Iterable[Any], file: IO[str] | None = None) -> None:
        self.runs = list(dict.fromkeys(runs))
        self.file = file if file is not None else sys.stderr
        isatty = getattr(self.file, "isatty", None)
        self.terminal = bool(isatty and isatty())
        self.every = TERMINAL_EVERY if self.terminal else LINES_EVERY
        self._last = 0.0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.draw()

    def update(self) -> None:
        """Redraw if it is time to."""
        if time.monotonic() - self._last >= self.every:
            self.draw()

    def draw(self) -> None:
        """Write the counts now."""
        with self._lock:
            self._last = time.monotonic()
            counts: dict[str, int] = {}
            for run in self.runs:
                counts[run.state.value] = counts.get(run.state.value, 0) + 1
            total = len(self.runs)
            final = sum(n for state, n in counts.items() if RunState(state).is_final)
            filled = _WIDTH * final // total if total else _WIDTH
            states = "  ".join(f"{counts[s]} {s}" for s in _ORDER if counts.get(s))
            line = (
                f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {final}/{total}  {states}  "
                f"{self._last - self._started:.1f} s"
            )
            try:
                if self.terminal:
                    self.file.write(f"\r{line}\x1b[K")
                else:
                    self.file.write(f"{line}\n")
                self.file.flush()
            except (OSError, ValueError):  # a closed stream: progress is not worth failing for
                pass

    def close(self) -> None:
        """The last line (on a terminal, the bar as it ends, then a new line)."""
        self.draw()
        if self.terminal:
            try:
                self.file.write("\n")
                self.file.flush()
            except (OSError, ValueError):
                pass


def progress(
    runs: Iterable[Any], timeout: float | None = None, *, file: IO[str] | None = None
) -> list[Any]:
    """Wait for ``runs`` (of any runners) showing their counts by state: a live bar when
    ``file`` (default stderr) is a terminal, a plain line every 10 s otherwise.

    :return: the runs, in order (distinct).
    :raises woflo.errors.WaitTimeout: if ``timeout`` passes first (the runs go on).
    """
    from woflo.errors import WaitTimeout

    deadline = deadline_after(timeout)
    bar = Progress(runs, file)
    changed = threading.Condition()
    left = [len(bar.runs)]

    def one_done(_run: Any) -> None:
        with changed:
            left[0] -= 1
            changed.notify_all()

    for run in bar.runs:
        run.add_done_callback(one_done)
    try:
        while True:
            with changed:
                if not left[0]:
                    return bar.runs
                remaining = seconds_left(deadline)
                if remaining == 0:
                    raise WaitTimeout(
                        f"{left[0]} of {len(bar.runs)} runs still going after {timeout} s; "
                        "they go on"
                    )
                changed.wait(bar.every if remaining is None else min(bar.every, remaining))
            bar.update()
    finally:
        for run in bar.runs:
            run.remove_done_callback(one_done)
        bar.close()
