"""The caller's end of the zygote: starting it, asking it for workers, reading its reports.

The protocol itself (fixed-size records on a Unix stream socket) is described, and served, in
:mod:`._zygote`, which runs in the zygote process.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading

from woflo import remote
from woflo.plugins import get_plugin_system
from woflo_plugins.multiprocess._zygote import RECORD, SPAWN


class _ForkGuard:
    """Holds back ``os.fork()`` in the program's other threads while a zygote is started.

    ``subprocess`` learns that its child has executed by reading a pipe until its end: a plain
    ``fork()`` in another thread meanwhile (``multiprocessing``'s ``fork`` start method, a
    library forking its workers right after a task was decorated) copies the pipe's write end
    into a child that never executes, and the zygote's start, so every run, waits forever. So
    does the zygote's end of the control socket. A fork waits here for the start (a few
    milliseconds) instead; forks that execute (``subprocess`` itself) are not held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._held = threading.local()
        os.register_at_fork(
            before=self._before, after_in_parent=self._after, after_in_child=self._in_child
        )

    def _before(self) -> None:
        self._held.it = self.lock.acquire(timeout=30)  # (never a fork refused: at worst late)

    def _after(self) -> None:
        if getattr(self._held, "it", False):
            self._held.it = False
            self.lock.release()

    def _in_child(self) -> None:
        self.lock = threading.Lock()  # (the child's copy is held by the fork; nothing starts)
        self._held = threading.local()


_fork_guard = _ForkGuard()


class ZygoteLink:
    """A started zygote process and the control socket to it."""

    def __init__(self) -> None:
        code = "from woflo_plugins.multiprocess._zygote import main; main()"
        flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
        with _fork_guard.lock:  # (no fork elsewhere until the zygote executed: see _ForkGuard)
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.process = subprocess.Popen(
                    [sys.executable, *flags, "-c", code, str(theirs.fileno()), str(os.getpid())],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # out of the terminal's process group: Ctrl-C is ours
                )
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()
        self.socket = ours
        init = {
            "plugins": get_plugin_system().manifest(),
            "sys_path": list(sys.path),
            "log_level": logging.getLogger().getEffectiveLevel(),
            "preload": [m for m in remote.PRELOAD if m in sys.modules],
        }
        blob = pickle.dumps(init)
        ours.sendall(struct.pack("=q", len(blob)) + blob)

    @property
    def pid(self) -> int:
        """The zygote's process id."""
        return self.process.pid

    def spawn(self, token: bytes, theirs: socket.socket) -> None:
        """Ask for a worker known by ``token``, talking on ``theirs`` (the caller closes it)."""
        socket.send_fds(self.socket, [SPAWN.pack(b"S", token)], [theirs.fileno()])

    def read(self) -> tuple[bytes, bytes, int] | None:
        """One report: ``(b"P", token, pid)`` a worker is up, ``(b"X", pid bytes, exitcode)``
        a worker exited; ``None`` once the zygote is gone."""
        data = b""
        while len(data) < RECORD.size:
            try:
                chunk = self.socket.recv(RECORD.size - len(data))
            except OSError:
                chunk = b""
            if not chunk:
                return None
            data += chunk
        kind, token, value = RECORD.unpack(data)
        return kind, token, value

    def close(self) -> None:
        """Close the socket (the zygote then kills its workers and exits) and reap it."""
        self.socket.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def killpg(pid: int, sig: int) -> None:
    """Signal the process group ``pid`` leads, if it is still there."""
    if pid <= 0:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def drain(fd: int) -> None:
    """Read a non-blocking pipe empty (the watcher's wake-up pipe)."""
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, OSError):
        pass
