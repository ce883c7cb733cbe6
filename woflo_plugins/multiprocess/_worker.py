"""The worker loop: runs in a process forked by the zygote, one attempt at a time.

Messages (one length-prefixed frame each, see ``_serialize.pack_job``/``pack_reply``)::

    caller -> worker   job: task token, (run_id, attempt, task_name), the pickled task (only
                       the first time this worker sees it), the pickled arguments
    worker -> caller   b"l": a log record                     any number, as they happen
                       b"o": duration, the pickled value      one per attempt, or
                       b"e": duration, the packed exception

The loop ends (and the process exits 0) when the caller closes the socket.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from woflo_plugins.multiprocess import _serialize

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
            self._send(_serialize.pack_reply(b"l", 0.0, _serialize.dumps(_plain(data))))
        except Exception:
            self.handleError(record)


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """Keep what pickles cheaply and safely; stringify the rest."""
    out = {}
    for key, value in data.items():
        if value is None or isinstance(value, str | int | float | bool | tuple | list | dict):
            out[key] = value
        else:
            out[key] = repr(value)
    return out


def serve(conn: Connection, log_level: int) -> int:
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
            call = TaskCall(task_name, run_id, attempt, task.fn, args, kwargs)
            outcome = task._plugins.hooks.execute_attempt(call)
            del args, kwargs, call, frame, task_blob, args_blob
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
        _context.clear()


def _failure(error: BaseException, duration: float) -> bytes:
    return _serialize.pack_reply(b"e", duration, _serialize.dump_exception(error))
