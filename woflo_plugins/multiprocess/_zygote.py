"""The zygote: a clean, single-threaded interpreter that forks the workers.

Started once per pool with ``subprocess`` (an exec'd interpreter: the caller's ``__main__`` is
never re-imported, whatever the platform's multiprocessing start method). It imports woflo and
loads the plugins once, so each worker it forks starts warm in a millisecond or two.

Control socket protocol (fixed-size records on a Unix stream socket)::

    caller -> zygote   b"S" + token(8)  with one fd (the worker's end of its socket): fork one
    zygote -> caller   b"P" + token(8) + pid(int64)            the worker for token is pid
                       b"X" + pid(int64) + exitcode(int64)     pid exited (-signum if killed)

When the caller goes away (end of file on the control socket, or the kernel's parent-death
signal on Linux, SIGTERM), the zygote SIGKILLs every worker's process group and exits: no
orphans. On Linux the zygote and every worker are subreapers: a process a task started that
leaves its parent (a daemon, a child in its own session) stays in the tree, and is killed when
its worker ends (the zygote kills every process re-parented to it that is not a worker).
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from typing import Any, NoReturn

RECORD = struct.Struct("=c8sq")  # kind, token / pid, value
SPAWN = struct.Struct("=c8s")


def set_parent_death_signal(expected_parent: int, sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies, and to make it the
    parent of its orphaned descendants (a subreaper), so that none escapes it (no-op
    elsewhere)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    if os.getppid() != expected_parent:  # the parent died before we asked
        os._exit(1)


def _children_of(pid: int) -> set[int]:
    """The live children of ``pid`` (from /proc; empty where there is none)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as listing:
            return {int(child) for child in listing.read().split()}
    except OSError:
        pass
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for name in entries:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    data = stat.read()
                if int(data[data.rindex(b")") + 2 :].split()[1]) == pid:
                    found.add(int(name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _kill_strays(workers: set[int]) -> None:
    """SIGKILL every process re-parented to the zygote that is not a worker: what a dead
    worker's task started, in its own session or process group included (the worker and the
    zygote are subreapers, so such processes end up here, not with init)."""
    me = os.getpid()
    for _ in range(50):  # a killed stray's own children come next: a few rounds at most
        strays = _children_of(me) - workers
        for pid in strays:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        _reap_strays(workers)
        if not strays:
            return
        time.sleep(0.01)


def _reap_strays(workers: set[int]) -> None:
    """Reap exited strays (never a worker: their exits are reported by :func:`_reap`)."""
    for pid in _children_of(os.getpid()) - workers:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


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
    # SIGTERM (not SIGKILL) when the caller dies: the zygote then kills every worker's tree
    set_parent_death_signal(int(sys.argv[2]), signal.SIGTERM)
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
    terminated: list[int] = []
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: terminated.append(1))
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
        # The caller gone (end of file, a broken pipe when reporting, or the kernel's
        # SIGTERM at its death), or told to end: kill every worker's tree, and leave quietly.
        if terminated or not _reap(ctl, children):
            _leave(ctl, children)
        if ctl in readable:
            try:
                data, fds = _recv_exact(ctl, SPAWN.size)
            except OSError:
                data, fds = b"", []
            if not data or data[:1] != b"S":
                for fd in fds:
                    os.close(fd)
                _leave(ctl, children)
            _kind, token = SPAWN.unpack(data)
            # SIGTERM blocked across the fork: the child resets the zygote's handler first,
            # then takes a SIGTERM that came meanwhile with the default action (it dies)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            pid = os.fork()
            if pid == 0:
                selector.close()
                _child(fds[0], ctl, (wake_r, wake_w), zygote_pid, init["log_level"])
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
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


def reaped() -> Iterator[tuple[int, int]]:
    """``(pid, wait status)`` of every child of this process that has exited, reaped now."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def _leave(ctl: socket.socket, children: set[int]) -> NoReturn:
    """Kill every worker's tree and exit at once: nothing is left to tear down, and a caller
    reading a pipe this process shares (``subprocess.run(capture_output=True)``) gets its end
    of file now, not after an interpreter's finalization."""
    _shutdown(children)
    ctl.close()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)


def _reap(ctl: socket.socket, children: set[int]) -> bool:
    """Reap exited workers and report them, and kill what they left behind; ``False`` if the
    caller is gone."""
    exited = False
    for pid, status in reaped():
        if pid not in children:  # a stray (see _kill_strays), now reaped
            continue
        exited = True
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
    if exited:
        _kill_strays(children)
    return True


def _shutdown(children: set[int]) -> None:
    for pid in children:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    children.clear()
    _kill_strays(children)


def _child(fd: int, ctl: socket.socket, wake: tuple[int, int], zygote: int, log_level: int) -> None:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the zygote's own handler is not ours
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked by the zygote
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
