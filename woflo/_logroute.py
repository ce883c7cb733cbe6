"""Log records of attempts executed in another process, on their way to the caller.

In the other process, a handler on the root logger sends each record logged during an attempt
(in its thread and context) to that attempt's sink, pickled (:func:`pickle_record`), tagged with
``task``, ``run_id`` and ``attempt``; in the caller, :func:`emit_record` hands it to the logger of
the same name. A process given over to woflo (:func:`init_worker`) sends every record, and
prints none itself. Public through :mod:`woflo.remote`.
"""

from __future__ import annotations

import contextvars
import logging
import os
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any

from woflo._pickling import PROTOCOL

Sink = Callable[[bytes], object]


def emit_record(record: bytes | bytearray | memoryview | dict[str, Any]) -> None:
    """In the caller: hand a log record captured in another process to the logger of the
    same name, with its level, time, pid and the run's ``task``, ``run_id``, ``attempt``; a
    message a plugin sent with :func:`forward_log` goes to the ``woflo_forwarded_log`` hook."""
    data = pickle.loads(record) if isinstance(record, bytes | bytearray | memoryview) else record
    if FORWARDED in data:
        from woflo.plugins import get_plugin_system

        if get_plugin_system().hooks.forwarded_log(data):
            return
        data = {"name": "woflo", "levelno": logging.WARNING, "levelname": "WARNING",
                "msg": f"a forwarded log message no plugin renders: {data!r}"}  # fmt: skip
    log_record = logging.makeLogRecord(data)
    logger = logging.getLogger(log_record.name)
    if logger.isEnabledFor(log_record.levelno):
        logger.handle(log_record)


FORWARDED = "woflo_forwarded"
"""The key that marks a :func:`forward_log` message (its value: the plugin's kind of message)."""


def forward_log(message: dict[str, Any]) -> bool:
    """Send ``message`` (a plain dict with :data:`FORWARDED` set) to the caller, as the records
    of the attempt running here go; ``False`` when nothing is captured here (this process is
    the caller, or no attempt runs), so the message is the sender's to handle.

    Values that do not pickle travel as their ``repr`` (one level deep into dict values)."""
    target = _target()
    if target is None:
        return False
    target[0](_pickle_plain(message))
    return True


def log_context() -> dict[str, Any] | None:
    """``task``, ``run_id`` and ``attempt`` of the attempt this thread's log records go with,
    or ``None`` when nothing is captured here (see :func:`forward_log`)."""
    target = _capture.get()  # (:func:`_target`, its first step inlined: the caller's case)
    if target is None:
        if _dedicated is None:
            return None
        target = _target()
    return target[1] if target is not None else None


class _Dedicated:
    """A worker process given over to woflo (:func:`init_worker`)."""

    __slots__ = ("current", "sink")

    def __init__(self, sink: Callable[[bytes], object] | None) -> None:
        self.sink = sink
        self.current: tuple[Callable[[bytes], object], dict[str, Any]] | None = None


_dedicated: _Dedicated | None = None
_capture: contextvars.ContextVar[tuple[Callable[[bytes], object], dict[str, Any]] | None] = (
    contextvars.ContextVar("woflo_log_capture", default=None)
)


def is_dedicated_worker() -> bool:
    """Whether this process was given over to running attempts (:func:`init_worker`)."""
    return _dedicated is not None


def init_worker(
    *, log_level: int | None = None, emit: Callable[[bytes], object] | None = None
) -> None:
    """Give this process over to running attempts (a pool's worker initializer).

    Every log record of the process goes to the caller, none to this process's own handlers
    (which would print it twice): records of an attempt with it, others (threads the task
    started) with the attempt executing, or to ``emit`` (each pickled) between attempts.
    The process ends when the process that created it dies (also through a fork server), so
    it cannot outlive the caller.

    :param log_level: the root logger's level here (default: as the first attempt says).
    """
    global _dedicated
    _dedicated = _Dedicated(emit)
    root = logging.getLogger()
    root.handlers[:] = [_CaptureHandler()]
    if log_level is not None:
        root.setLevel(log_level)
    _die_with_creator()


def _die_with_creator() -> None:
    """End this process when the one that created it dies: on Linux the kernel kills it when
    its parent dies; a process created through a fork server (multiprocessing's forkserver,
    whose child it is) also watches its creator's sentinel."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    multiprocessing = sys.modules.get("multiprocessing")
    creator = multiprocessing.parent_process() if multiprocessing is not None else None
    if creator is None or creator.pid == os.getppid() or creator.sentinel is None:
        return
    sentinel = creator.sentinel

    def watch() -> None:
        from multiprocessing.connection import wait

        wait([sentinel])
        os._exit(1)

    from woflo._threads import background_thread

    background_thread(watch, "woflo-creator-watch").start()


def start_capture(emit: Sink | None, context: dict[str, Any]) -> Any:
    """Send the records logged from now on, in this context, to ``emit`` (``None``: to the
    sink of :func:`init_worker`, or nowhere special in a process that did not call it); give
    what returns to :func:`stop_capture`. (Two plain calls, not a context manager: this is on
    every attempt's path.)"""
    sink = emit if emit is not None else (_dedicated.sink if _dedicated is not None else None)
    if sink is None:
        return None
    if not _capture_installed:
        _install_capture()
    if _dedicated is not None:
        _dedicated.current = (sink, context)
    return _capture.set((sink, context))


def stop_capture(token: Any) -> None:
    """End what :func:`start_capture` started."""
    if token is not None:
        _capture.reset(token)
        if _dedicated is not None:
            _dedicated.current = None


def is_dedicated() -> bool:
    """Whether :func:`init_worker` gave this process over to woflo."""
    return _dedicated is not None


def _target() -> tuple[Sink, dict[str, Any]] | None:
    """The sink and run context of what is logged here now, if anything is captured."""
    target = _capture.get()
    if target is None and _dedicated is not None:
        target = _dedicated.current
        if target is None and _dedicated.sink is not None:
            target = (_dedicated.sink, {})
    return target


class _CaptureHandler(logging.Handler):
    """Sends each record to the sink of the attempt that logged it."""

    def emit(self, record: logging.LogRecord) -> None:
        target = _target()
        if target is None:
            return
        sink, context = target
        try:
            sink(pickle_record(record, context))
        except Exception:
            self.handleError(record)


_capture_installed = False
_install_lock = threading.Lock()


def _install_capture() -> None:
    global _capture_installed
    if _capture_installed:
        return
    with _install_lock:
        root = logging.getLogger()
        if not any(isinstance(h, _CaptureHandler) for h in root.handlers):
            root.addHandler(_CaptureHandler())
        _capture_installed = True


def pickle_record(record: logging.LogRecord, context: dict[str, Any]) -> bytes:
    """A log record's attributes, pickled for the caller (:func:`emit_record`): the message
    formatted, the exception as its traceback text, ``context`` added, and any value that
    does not pickle as its ``repr``."""
    data = dict(record.__dict__)
    data["msg"] = record.getMessage()
    data["args"] = None
    if record.exc_info:
        data["exc_text"] = logging.Formatter().formatException(record.exc_info)
    data["exc_info"] = None
    for key, value in context.items():
        data.setdefault(key, value)
    return _pickle_plain(data)


def _pickle_plain(data: dict[str, Any]) -> bytes:
    try:
        return pickle.dumps(data, PROTOCOL)
    except Exception:
        pass
    return pickle.dumps(
        {k: _plain(v) if isinstance(v, dict) else _picklable(v) for k, v in data.items()},
        PROTOCOL,
    )


def _plain(data: dict[Any, Any]) -> dict[Any, Any]:
    return {_picklable(k): _picklable(v) for k, v in data.items()}


def _picklable(value: Any) -> Any:
    try:
        pickle.dumps(value, PROTOCOL)
    except Exception:
        return repr(value)
    return value


def route_structlog() -> None:
    """Deprecated: send structlog events through stdlib logging, unless structlog is
    configured in this process. The logging plugin now forwards structlog events to the
    caller as event dicts, rendered there (:func:`execute` no longer calls this)."""
    import warnings

    warnings.warn(
        "woflo.remote.route_structlog() is deprecated: the logging plugin forwards structlog "
        "events from workers by itself",
        DeprecationWarning,
        stacklevel=2,
    )
    structlog = sys.modules.get("structlog")
    if structlog is None or structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
