"""The worker loop: runs in a process forked by the zygote, one attempt at a time.

Messages (one length-prefixed frame each, see ``_wire.pack_job``/``pack_reply``)::

    caller -> worker   job: task token, (run_id, attempt, task_name), the pickled task (only
                       the first time this worker sees it), the pickled arguments
    worker -> caller   b"l": a log record                     any number, as they happen
                       b"o": duration, the pickled value      one per attempt, or
                       b"e": duration, the packed exception

The loop ends (and the process exits 0) when the caller closes the socket, or after a reply
in upper case (``b"O"``, ``b"E"``): the attempt changed the process in a way that cannot be put
back (:class:`._world.Sandbox`), so this worker retires.

Executing an attempt is :func:`woflo.remote.execute`'s, the same helper any out-of-process
runner uses: the process is given over to woflo (:func:`woflo.remote.init_worker`), so every
log record goes to the caller as it is logged, tagged with the attempt, and none is printed here.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from woflo import TaskCall, remote
from woflo_plugins.multiprocess import _lines, _wire, _world
from woflo_plugins.multiprocess._channel import Channel
from woflo_plugins.multiprocess._zygote import reaped


def serve(conn: Channel, log_level: int) -> int:
    """Execute attempts sent on ``conn`` until it closes; return the exit status."""
    lock = threading.Lock()

    def send(frame: bytes) -> None:
        with lock:
            conn.send_bytes(frame)

    def send_log(record: bytes) -> None:
        send(_wire.pack_reply(b"l", 0.0, record))

    remote.init_worker(log_level=log_level, emit=send_log)
    _lines.install()  # whole lines on the stdout and stderr the workers share

    tasks: dict[bytes, Any] = {}
    keep: list[Any] = []
    sandbox = _world.Sandbox()
    while True:
        try:
            frame = conn.recv_bytes()
        except (EOFError, OSError):
            return 0
        token, meta, task_blob, args_blob = _wire.unpack_job(frame)
        run_id, attempt, task_name, world, context = meta
        saved = sandbox.enter(world)
        try:
            if task_blob:
                tasks[token] = remote.load_part(task_blob, "the task", task_name)
            task = tasks[token]
            args, kwargs = remote.load_part(args_blob, "the arguments", task_name)
        except BaseException as exc:
            reply = _wire.pack_reply(b"e", 0.0, remote.dump_exception(exc))
        else:
            call = TaskCall(task_name, run_id, attempt, task.fn, args, kwargs, context or {})
            outcome = remote.execute(task, call)
            # Dropped only once the reply is sent: a __del__ that ends the worker must not
            # take a result already computed with it.
            keep.extend((args, kwargs, call, outcome))
            del args, kwargs, call
            ok, payload, duration = remote.pack_outcome(outcome, task_name)
            reply = _wire.pack_reply(b"o" if ok else b"e", duration, payload)
            del outcome, payload
        sandbox.leave(saved)
        if sandbox.retire:  # something the task changed cannot be put back: this one ends
            reply = reply[:1].upper() + reply[1:]
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
        _reap_orphans()
        if sandbox.retire:
            return 0


def _reap_orphans() -> None:
    """Reap exited processes the attempt left (the worker is a subreaper: orphans of the
    task's children become its own), so none stays a zombie while the worker lives."""
    for _pid, _status in reaped():
        pass
