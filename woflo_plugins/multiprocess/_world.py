"""The process state an attempt runs in: the caller's as of the call, and none of another run's.

In the caller, :func:`capture` notes the current directory and the environment at the call
(cheap when nothing changed: a ``getcwd()`` and a dictionary comparison). A job carries them to
its worker only when they differ from what that worker last got.

In the worker, :class:`Sandbox` applies them before the attempt and, after it, puts back what
the task changed in the worker's process state: the directory, the environment, ``sys.path``,
signal handlers, pending alarms, the umask, resource limits. What cannot be put back (a closed
standard stream, a lowered hard limit) retires the worker after its reply instead.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from typing import Any

World = tuple[str | None, int, dict[str, str]]
"""(current directory, environment version, environment)."""

_env_seen: dict[bytes, bytes] | dict[str, str] = {}
_env_version = 0
_env_copy: dict[str, str] = {}


def capture() -> World:
    """The caller's directory and environment now (the environment's version changes when it
    does, so a worker that has it need not get it again)."""
    global _env_seen, _env_version, _env_copy
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # the directory was removed: workers keep the one they have
        cwd = None
    data = getattr(os.environ, "_data", None)
    if data is None:  # not CPython's os.environ: compare the mapping itself
        data = dict(os.environ)
    if data != _env_seen:
        _env_seen = dict(data)
        _env_copy = dict(os.environ)
        _env_version += 1
    return cwd, _env_version, _env_copy


_SIGNALS = [
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPIPE")
    if hasattr(signal, name)
]
_LIMITS = [
    getattr(resource, name)
    for name in ("RLIMIT_NOFILE", "RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_FSIZE")
    if hasattr(resource, name)
]


class Sandbox:
    """Applies the caller's world in a worker, and undoes what an attempt changed."""

    def __init__(self) -> None:
        self.cwd = os.getcwd()
        self.env = dict(os.environ)
        self.version = 0
        self.retire = False
        """Set when the attempt changed something that cannot be put back."""

    def enter(self, world: tuple[str | None, int, dict[str, str] | None] | None) -> Any:
        """Apply ``world`` (``None``: as before), and note what to put back after."""
        if world is not None:
            cwd, version, env = world
            if cwd is not None and cwd != self.cwd:
                try:
                    os.chdir(cwd)
                    self.cwd = cwd
                except OSError:
                    pass  # removed meanwhile: the task sees the worker's directory
            if env is not None and version != self.version:
                os.environ.clear()
                os.environ.update(env)
                self.env, self.version = dict(env), version
        data = getattr(os.environ, "_data", None)
        return (
            dict(data) if data is not None else dict(os.environ),
            list(sys.path),
            [signal.getsignal(s) for s in _SIGNALS],
            [resource.getrlimit(limit) for limit in _LIMITS],
            _umask(),
        )

    def leave(self, saved: Any) -> None:
        """Put back what the attempt changed; retire the worker where that cannot be done."""
        env_data, path, handlers, limits, umask = saved
        try:
            if os.getcwd() != self.cwd:
                os.chdir(self.cwd)
        except OSError:
            self.retire = True
        data = getattr(os.environ, "_data", None)
        if (data if data is not None else dict(os.environ)) != env_data:
            os.environ.clear()
            os.environ.update(self.env)
        if sys.path != path:
            sys.path[:] = path
        for sig, handler in zip(_SIGNALS, handlers, strict=True):
            if signal.getsignal(sig) is not handler and handler is not None:
                signal.signal(sig, handler)
        if hasattr(signal, "alarm"):
            signal.alarm(0)  # an alarm the task set must not go off in the next one
        for limit, before in zip(_LIMITS, limits, strict=True):
            if resource.getrlimit(limit) != before:
                try:
                    resource.setrlimit(limit, before)
                except (ValueError, OSError):  # a lowered hard limit stays lowered
                    self.retire = True
        if _umask() != umask:
            os.umask(umask)
        for stream in (sys.stdin, sys.stdout, sys.stderr):
            if stream is None or getattr(stream, "closed", False):
                self.retire = True
        for fd in (1, 2):
            try:
                os.fstat(fd)
            except OSError:
                self.retire = True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def for_worker(worker: Any, world: World | None) -> Any:
    """What of ``world`` (a job's) ``worker`` must be told: ``None`` if it has it, the
    directory alone if only that changed, else the directory and the environment; the worker
    is noted as having it."""
    if world is None:
        return None
    cwd, version, env = world
    if worker.world == (cwd, version):
        return None
    same_env = worker.world[1] == version
    worker.world = (cwd, version)
    return (cwd, version, None if same_env else env)
