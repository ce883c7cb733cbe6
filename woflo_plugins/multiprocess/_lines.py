"""Whole lines on the standard streams a worker shares with the caller and the other workers.

Every worker writes to the caller's own stdout and stderr. Python's streams write a line in
pieces when unbuffered (``PYTHONUNBUFFERED=1``: ``print("a", "b")`` is four writes) or when a
buffer fills, so two workers printing at once could mix their lines. Here each line goes out in
one ``write(2)`` (atomic on a pipe up to ``PIPE_BUF``, 4 KiB, and on a terminal in practice),
complete lines as soon as they are written; a partial line waits for its end, an explicit
``flush()``, or the end of the attempt (the worker flushes both streams then).
"""

from __future__ import annotations

import io
import os
import sys
import threading
from typing import Any

__all__ = ["LineWriter", "install"]


class LineWriter(io.TextIOBase):
    """A text stream over ``stream``'s file descriptor that writes whole lines only."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream
        self._fd = stream.fileno()
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        self._errors = getattr(stream, "errors", None) or "strict"
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    @property
    def errors(self) -> str:  # type: ignore[override]
        return self._errors

    @property
    def buffer(self) -> Any:
        """The original stream's binary buffer (pending text is written first)."""
        self.flush()
        return self._stream.buffer

    @property
    def line_buffering(self) -> bool:
        return True

    @property
    def name(self) -> Any:
        return getattr(self._stream, "name", self._fd)

    def fileno(self) -> int:
        fd: int = self._fd
        return fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            end = text.rfind("\n")
            if end < 0:
                self._pending += text
            else:
                whole, self._pending = self._pending + text[: end + 1], text[end + 1 :]
                self._put(whole)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                pending, self._pending = self._pending, ""
                self._put(pending)

    def _put(self, text: str) -> None:
        data = memoryview(text.encode(self._encoding, self._errors))
        while data:
            try:
                data = data[os.write(self._fd, data) :]
            except InterruptedError:
                continue
            except OSError:
                return  # the other end is gone: like a closed pipe, the text is lost


def install() -> None:
    """Put a :class:`LineWriter` in place of ``sys.stdout`` and ``sys.stderr``."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            setattr(sys, name, LineWriter(stream))
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            pass  # no file descriptor (None, or replaced): leave it
