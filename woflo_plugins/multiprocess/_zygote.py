"""The zygote: a clean, single-threaded interpreter that forks the workers.

Started once per pool with ``subprocess`` (an exec'd interpreter: the caller's ``__main__`` is
never re-imported, whatever the platform's multiprocessing start method). It imports woflo and
loads the plugins once, so each worker it forks starts warm in a millisecond or two.

Control socket protocol (fixed-size records on a Unix stream socket)::

    caller -> zygote   b"S" + token(8)  with one fd (the worker's end of its socket): fork one
    zygote -> caller   b"P" + token(8) + pid(int64)            the worker for token is pid
                       b"X" + pid(int64) + exitcode(int64)     pid exited (-signum if killed)

When the caller goes away (end of file on the control socket, or the kernel's parent-death
signal on Linux), the zygote SIGKILLs every worker's process group and exits: no orphans.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import struct
import sys
from typing import Any

RECORD = struct.Struct("=c8sq")  # kind, token / pid, value
SPAWN = struct.Struct("=c8s")


def set_parent_death_signal(expected_parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != expected_parent:  # the parent died before we asked
        os._exit(1)


def _recv_exact(sock: socket.socket, size: int) -> tuple[bytes, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(sock, size, 1)
    while data and len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            return b"", fds
        data += more
    return data, fds


def main() -> None:
    """Run the zygote: ``python -c '...main()' CONTROL_FD PARENT_PID``."""
    ctl = socket.socket(fileno=int(sys.argv[1]))
    set_parent_death_signal(int(sys.argv[2]))
    header = ctl.recv(8, socket.MSG_WAITALL)
    (length,) = struct.unpack("=q", header)
    init: dict[str, Any] = _loads(_recv_all(ctl, length))
    sys.path[:] = init["sys_path"]
    from woflo import remote
    from woflo_plugins.multiprocess import _wire, _worker  # noqa: F401  (warm for workers)

    try:  # the caller's plugins, without scanning the installed distributions again
        remote.load_plugins(init["plugins"])
    except Exception:  # the workers load them the usual way and report what fails
        pass
    zygote_pid = os.getpid()
    children: set[int] = set()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.set_wakeup_fd(wake_w)
    preloaded = False
    selector = selectors.DefaultSelector()  # no select(): file descriptors may exceed 1024
    selector.register(ctl, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while True:
        readable = [key.fileobj for key, _ in selector.select(None if preloaded else 0.05)]
        if not readable and not preloaded:
            preloaded = True
            _preload(init.get("preload", ()))
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        # The caller gone (end of file, or a broken pipe when reporting): leave quietly.
        if not _reap(ctl, children):
            _leave(ctl, children)
            return
        if ctl in readable:
            try:
                data, fds = _recv_exact(ctl, SPAWN.size)
            except OSError:
                data, fds = b"", []
            if not data or data[:1] != b"S":
                for fd in fds:
                    os.close(fd)
                _leave(ctl, children)
                return
            _kind, token = SPAWN.unpack(data)
            pid = os.fork()
            if pid == 0:
                selector.close()
                _child(fds[0], ctl, (wake_r, wake_w), zygote_pid, init["log_level"])
            try:  # here too (not only in the child): the group exists before anyone learns
                os.setpgid(pid, pid)  # the pid, so a kill of the group is never lost
            except OSError:
                pass
            for fd in fds:
                os.close(fd)
            children.add(pid)
            try:
                ctl.sendall(RECORD.pack(b"P", token, pid))
            except OSError:
                _leave(ctl, children)
                return


def _leave(ctl: socket.socket, children: set[int]) -> None:
    _shutdown(children)
    ctl.close()


def _reap(ctl: socket.socket, children: set[int]) -> bool:
    """Reap exited workers and report them; ``False`` if the caller is gone."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return True
        children.discard(pid)
        try:
            os.killpg(pid, signal.SIGKILL)  # whatever the task left behind in its group
        except OSError:
            pass
        exitcode = os.waitstatus_to_exitcode(status)
        try:
            ctl.sendall(RECORD.pack(b"X", pid.to_bytes(8, "little"), exitcode))
        except OSError:
            return False
    return True


def _shutdown(children: set[int]) -> None:
    for pid in children:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    for _pid in list(children):
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break


def _child(fd: int, ctl: socket.socket, wake: tuple[int, int], zygote: int, log_level: int) -> None:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for wfd in wake:
            os.close(wfd)
        ctl.close()
        os.setpgid(0, 0)
        set_parent_death_signal(zygote)
        from woflo_plugins.multiprocess._channel import Channel
        from woflo_plugins.multiprocess._worker import serve

        code = serve(Channel.from_fd(fd), log_level)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _preload(modules: Any) -> None:
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass


def _recv_all(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError("the caller went away during start-up")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _loads(data: bytes) -> Any:
    import pickle

    return pickle.loads(data)
