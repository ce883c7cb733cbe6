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
from woflo_plugins.multiprocess._forks import fork_guard
from woflo_plugins.multiprocess._zygote import RECORD, SPAWN


class ZygoteLink:
    """A started zygote process and the control socket to it."""

    def __init__(self) -> None:
        code = "from woflo_plugins.multiprocess._zygote import main; main()"
        flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
        with fork_guard.lock:  # (no fork elsewhere until the zygote executed: see ForkGuard)
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


_early_lock = threading.Lock()
_early: ZygoteLink | None = None
_early_started = False  # (one early start a process: for its first pool only)


def start_early() -> None:
    """Start the zygote now, in the calling thread, for the pool made next to :func:`adopt`.

    For a decoration in the program's main thread (``warm_up``): the interpreter then boots
    while the program goes on to its first call, where starting it from the pool's own thread
    came a few milliseconds later, after that thread was scheduled and had imported the pool.
    Only the main thread starts one: Linux's parent-death signal follows the *thread* that
    started the zygote, and the main thread lasts as long as the program. Only once in a
    process: the decorations that come while the first pool starts (a script's others) find
    its zygote adopted, or about to be, and the pools after it start their own.
    """
    global _early, _early_started
    if threading.current_thread() is not threading.main_thread():
        return
    with _early_lock:
        if not _early_started:
            _early_started = True
            _early = ZygoteLink()


def adopt() -> ZygoteLink:
    """The zygote :func:`start_early` started, if it is still up, else a new one. Either way
    no early start comes after it: a decoration meanwhile would start one no pool adopts."""
    link = _take_early(last=True)
    if link is not None:
        if link.process.poll() is None:
            return link
        link.close()
    return ZygoteLink()


def discard_early() -> None:
    """Stop the zygote :func:`start_early` started if no pool adopted it (``shutdown()``: the
    pool made next would start with what the program was at the decoration)."""
    link = _take_early(last=False)
    if link is not None:
        link.close()


def _take_early(last: bool) -> ZygoteLink | None:
    """The zygote started early, if no pool took it yet (``last``: none starts after)."""
    global _early, _early_started
    with _early_lock:
        link, _early = _early, None
        _early_started = _early_started or last
    return link


def _forget_early_in_child() -> None:  # a fork of the caller must not adopt its zygote
    global _early, _early_lock, _early_started
    _early = None
    _early_started = False
    _early_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_early_in_child)


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
