"""The process state an attempt runs in: the caller's as of the call, and none of another run's.

In the caller, :func:`capture` notes the current directory and the environment at the call
(cheap when nothing changed: a counter of ``os.chdir`` calls and a dictionary comparison; a
directory changed by other means than ``os.chdir``/``os.fchdir``, such as a C extension's
``chdir(2)``, is not seen). A job carries them to
its worker only when they differ from what that worker last got.

In the worker, :class:`Sandbox` applies them before the attempt and, after it, puts back what
the task changed in the worker's process state: the directory, the environment, ``sys.path``,
signal handlers, pending alarms, the umask, resource limits. What cannot be put back (a closed
standard stream, a lowered hard limit) retires the worker after its reply instead. About 1.5 us
per attempt when nothing changed: the calls that change the process (``os.chdir``,
``os.umask``, ``signal.signal``, ``signal.alarm``, ``resource.setrlimit``, ...) are counted
in the worker, and only a count that moved makes the sandbox look.
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


_chdirs = 0  # calls of os.chdir / os.fchdir in this process (see _track_chdir)
_cwd_seen: tuple[int, str | None] = (-1, None)


def _track_chdir() -> None:
    """Count the caller's ``os.chdir``/``os.fchdir`` calls, so that :func:`capture` asks the
    kernel for the directory only after one: ``getcwd()`` releases the GIL, and handing it to
    the watcher thread and back cost ~18 us per call, a fifth of a call's whole cost."""
    for name in ("chdir", "fchdir"):
        original = getattr(os, name, None)
        if original is None or getattr(original, "_woflo_counts", False):
            continue

        def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            global _chdirs
            try:
                return _original(*args, **kwargs)
            finally:
                _chdirs += 1

        counted._woflo_counts = True  # type: ignore[attr-defined]
        counted.__wrapped__ = original  # type: ignore[attr-defined]
        counted.__doc__ = original.__doc__
        counted.__name__ = original.__name__
        setattr(os, name, counted)


def capture() -> World:
    """The caller's directory and environment now (the environment's version changes when it
    does, so a worker that has it need not get it again)."""
    global _env_seen, _env_version, _env_copy, _cwd_seen
    if _cwd_seen[0] != _chdirs:
        try:
            _cwd_seen = (_chdirs, os.getcwd())
        except OSError:  # the directory was removed: workers keep the one they have
            _cwd_seen = (_chdirs, None)
    cwd = _cwd_seen[1]
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
    """Applies the caller's world in a worker, and undoes what an attempt changed.

    Signal handlers and resource limits are put back to what the worker started with; to keep
    the check cheap (no system call per attempt when nothing changed), the sandbox counts the
    calls of ``signal.signal`` and ``resource.setrlimit``/``prlimit`` made in the worker.
    """

    def __init__(self) -> None:
        self.cwd = os.getcwd()
        self.env = dict(os.environ)
        self.version = 0
        self.retire = False
        """Set when the attempt changed something that cannot be put back."""
        self._handlers = [signal.getsignal(s) for s in _SIGNALS]
        self._limits = [resource.getrlimit(limit) for limit in _LIMITS]
        self._changes = 0
        self._umask = _umask()
        for module, name in (
            (signal, "signal"),
            (signal, "alarm"),
            (signal, "setitimer"),
            (resource, "setrlimit"),
            (resource, "prlimit"),
            (os, "chdir"),
            (os, "fchdir"),
            (os, "umask"),
        ):
            _count_calls(module, name, self)

    def changed(self) -> None:
        """A handler or a limit may have changed (called by the counted functions)."""
        self._changes += 1

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
        return (dict(data) if data is not None else dict(os.environ), list(sys.path), self._changes)

    def leave(self, saved: Any) -> None:
        """Put back what the attempt changed; retire the worker where that cannot be done."""
        env_data, path, changes = saved
        data = getattr(os.environ, "_data", None)
        if (data if data is not None else dict(os.environ)) != env_data:
            os.environ.clear()
            os.environ.update(self.env)
        if sys.path != path:
            sys.path[:] = path
        if self._changes != changes:  # the task called one of the counted functions
            self._put_back_process_state()
        for stream in (sys.stdin, sys.stdout, sys.stderr):
            if stream is None or getattr(stream, "closed", False):
                self.retire = True

    def _put_back_process_state(self) -> None:
        try:
            if os.getcwd() != self.cwd:
                _ORIGINAL["chdir"](self.cwd)
        except OSError:
            self.retire = True
        if hasattr(signal, "alarm"):
            _ORIGINAL["alarm"](0)  # an alarm the task set must not go off in the next one
        if hasattr(signal, "setitimer"):
            _ORIGINAL["setitimer"](signal.ITIMER_REAL, 0)
        if _umask() != self._umask:
            _ORIGINAL["umask"](self._umask)
        for sig, handler in zip(_SIGNALS, self._handlers, strict=True):
            if handler is not None and signal.getsignal(sig) is not handler:
                _ORIGINAL["signal"](sig, handler)
        for limit, before in zip(_LIMITS, self._limits, strict=True):
            if resource.getrlimit(limit) != before:
                try:
                    _ORIGINAL["setrlimit"](limit, before)
                except (ValueError, OSError):  # a lowered hard limit stays lowered
                    self.retire = True


def _count_calls(module: Any, name: str, sandbox: Sandbox) -> None:
    """Have ``module.name`` tell ``sandbox`` each time it is called."""
    original = _ORIGINAL.setdefault(name, getattr(module, name, None))
    if original is None:
        return

    def counted(*args: Any, **kwargs: Any) -> Any:
        sandbox.changed()
        return original(*args, **kwargs)

    counted.__wrapped__ = original  # type: ignore[attr-defined]
    counted.__doc__ = original.__doc__
    setattr(module, name, counted)


_ORIGINAL: dict[str, Any] = {}
"""The functions :func:`_count_calls` replaced, for the sandbox's own use."""


def _umask() -> int:
    umask = _ORIGINAL.get("umask", os.umask)
    mask: int = umask(0)
    umask(mask)
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


_track_chdir()
