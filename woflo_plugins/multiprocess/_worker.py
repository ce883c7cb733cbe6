"""The worker loop: runs in a process forked by the zygote, one attempt at a time.

Messages (one length-prefixed frame each, see ``_serialize.pack_job``/``pack_reply``)::

    caller -> worker   job: task token, (run_id, attempt, task_name), the pickled task (only
                       the first time this worker sees it), the pickled arguments
    worker -> caller   b"l": a log record                     any number, as they happen
                       b"o": duration, the pickled value      one per attempt, or
                       b"e": duration, the packed exception

The loop ends (and the process exits 0) when the caller closes the socket.

Logging: the root logger gets one handler that sends every record to the caller, where it is
handled by the logger of the same name, with its level, time (``created``) and the worker's pid
(``process``), tagged with ``task``, ``run_id`` and ``attempt``. The root level is the caller's
root level when the pool started. structlog, unless the task's code configures it, is routed
through the stdlib (``render_to_log_kwargs``), so its events travel the same way with their
fields as record attributes.
"""

from __future__ import annotations

import logging
import pickle
import sys
import threading
import time
from typing import Any

from woflo_plugins.multiprocess import _serialize
from woflo_plugins.multiprocess._channel import Channel

_context: dict[str, Any] = {}


class _ForwardHandler(logging.Handler):
    """Sends every log record to the caller, tagged with the attempt's task, run and number."""

    def __init__(self, send: Any) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = dict(record.__dict__)
            data["msg"] = record.getMessage()
            data["args"] = None
            if record.exc_info:
                data["exc_text"] = logging.Formatter().formatException(record.exc_info)
            data["exc_info"] = None
            for key, value in _context.items():
                data.setdefault(key, value)
            self._send(_serialize.pack_reply(b"l", 0.0, _pickle_record(data)))
        except Exception:
            self.handleError(record)


def _pickle_record(data: dict[str, Any]) -> bytes:
    """The record's attributes, pickled; any value that does not pickle goes as its repr."""
    try:
        return pickle.dumps(data, _serialize.PROTOCOL)
    except Exception:
        pass
    plain = {}
    for key, value in data.items():
        try:
            pickle.dumps(value, _serialize.PROTOCOL)
        except Exception:
            value = repr(value)
        plain[key] = value
    return pickle.dumps(plain, _serialize.PROTOCOL)


def _route_structlog() -> None:
    """Send structlog events through stdlib logging, hence to the caller, unless the task's
    code configured structlog itself (then its configuration holds, in this worker)."""
    global _structlog_routed
    structlog = sys.modules.get("structlog")
    if _structlog_routed or structlog is None or structlog.is_configured():
        return
    _structlog_routed = True
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


_structlog_routed = False


def serve(conn: Channel, log_level: int) -> int:
    """Execute attempts sent on ``conn`` until it closes; return the exit status."""
    lock = threading.Lock()

    def send(frame: bytes) -> None:
        with lock:
            conn.send_bytes(frame)

    root = logging.getLogger()
    root.handlers[:] = [_ForwardHandler(send)]
    root.setLevel(log_level)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)

    from woflo import TaskCall

    tasks: dict[bytes, Any] = {}
    keep: list[Any] = []
    while True:
        try:
            frame = conn.recv_bytes()
        except (EOFError, OSError):
            return 0
        token, (run_id, attempt, task_name), task_blob, args_blob = _serialize.unpack_job(frame)
        _context.update(task=task_name, run_id=run_id, attempt=attempt)
        start = time.perf_counter()
        try:
            try:
                if task_blob:
                    tasks[token] = _serialize.loads(task_blob)
                task = tasks[token]
            except BaseException as exc:
                exc.add_note(f"(raised while loading task {task_name!r} in worker process)")
                raise
            try:
                args, kwargs = _serialize.loads(args_blob)
            except BaseException as exc:
                exc.add_note(
                    f"(raised while unpickling the arguments of task {task_name!r} "
                    "in the worker process)"
                )
                raise
        except BaseException as exc:
            reply = _failure(exc, time.perf_counter() - start)
        else:
            _route_structlog()
            call = TaskCall(task_name, run_id, attempt, task.fn, args, kwargs)
            outcome = task._plugins.hooks.execute_attempt(call)
            # Dropped only once the reply is sent: a __del__ that ends the worker must not
            # take a result already computed with it.
            keep.extend((args, kwargs, call, outcome))
            del args, kwargs, call
            if outcome.error is not None:
                reply = _failure(outcome.error, outcome.duration)
            else:
                try:
                    blob = _serialize.dumps_for_caller(outcome.value)
                except BaseException as exc:
                    exc.add_note(
                        f"(raised while pickling the result of task {task_name!r} "
                        f"to send it back: {type(outcome.value).__qualname__} object)"
                    )
                    reply = _failure(exc, outcome.duration)
                else:
                    reply = _serialize.pack_reply(b"o", outcome.duration, blob)
                    del blob
            del outcome
        del frame, task_blob, args_blob
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            send(reply)
        except OSError:
            return 0
        del reply
        keep.clear()
        _context.clear()


def _failure(error: BaseException, duration: float) -> bytes:
    return _serialize.pack_reply(b"e", duration, _serialize.dump_exception(error))
