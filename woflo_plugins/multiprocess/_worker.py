"""The worker loop: runs in a process forked by the zygote, one attempt at a time.

Messages (one length-prefixed frame each, see ``_wire.pack_job``/``pack_reply``)::

    caller -> worker   job: task token, (run_id, attempt, task_name), the pickled task (only
                       the first time this worker sees it), the pickled arguments; its
                       sequence number, and whether it is *queued* (sent while the worker
                       was busy with another)
                       cancel: the sequence number of a queued job not to start
    worker -> caller   b"l": a log record                     any number, as they happen
                       b"o": duration, the pickled value      one per attempt, or
                       b"e": duration, the packed exception
                       b"s": a queued job starts now          (if not announced by a reply)
                       b"k": a queued job was cancelled in time, and never starts

A queued job starts only once the caller was told: a result names the queued job that the
worker starts next (its sequence number; 0 for none), or a b"s" goes first. The caller so
always knows which job a worker runs (to stop it, or to say it crashed with it), and a cancel
that reaches the worker before the announcement means the job never runs.

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
from woflo_plugins.multiprocess._inbox import Inbox, absorb
from woflo_plugins.multiprocess._zygote import reaped


def serve(conn: Channel, log_level: int) -> int:
    """Execute attempts sent on ``conn`` until it closes; return the exit status."""
    lock = threading.Lock()

    def send(*frames: bytes) -> None:
        with lock:
            if len(frames) == 1:
                conn.send_bytes(frames[0])
            else:
                conn.send_many(list(frames))

    def send_log(record: bytes) -> None:
        send(_wire.pack_reply(b"l", 0.0, record))

    remote.init_worker(log_level=log_level, emit=send_log)
    _lines.install()  # whole lines on the stdout and stderr the workers share

    tasks: dict[bytes, Any] = {}
    unloaded: dict[bytes, bytes] = {}  # tasks that came with a job that did not run
    keep: list[Any] = []
    sandbox = _world.Sandbox()
    inbox = Inbox(conn, send)
    while True:
        try:
            frame = inbox.next_job()
        except (EOFError, OSError):
            return 0
        for other in inbox.not_run:  # jobs that did not run: what they brought still counts
            sandbox.leave(sandbox.enter(absorb(other, tasks, unloaded)))
        inbox.not_run.clear()
        token, meta, task_blob, args_blob = _wire.unpack_job(frame)
        run_id, attempt, task_name, world, context = meta
        saved = sandbox.enter(world)
        duration = 0.0
        inbox.attempt_starts(_wire.job_header(frame)[1])
        try:
            if task_blob:
                tasks[token] = remote.load_part(task_blob, "the task", task_name)
            elif token in unloaded:
                tasks[token] = remote.load_part(unloaded.pop(token), "the task", task_name)
            task = tasks[token]
            args, kwargs = remote.load_part(args_blob, "the arguments", task_name)
        except BaseException as exc:
            kind, payload = b"e", remote.dump_exception(exc)
        else:
            call = TaskCall(task_name, run_id, attempt, task.fn, args, kwargs, context or {})
            outcome = remote.execute(task, call)
            # Dropped only once the reply is sent: a __del__ that ends the worker must not
            # take a result already computed with it.
            keep.extend((args, kwargs, call, outcome))
            del args, kwargs, call
            ok, payload, duration = remote.pack_outcome(outcome, task_name)
            kind = b"o" if ok else b"e"
            del outcome
        inbox.attempt_ends()
        sandbox.leave(saved)
        del frame, task_blob, args_blob
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        replies: list[bytes] = []
        if sandbox.retire:  # something the task changed cannot be put back: this one ends
            kind = kind.upper()  # (and it announces nothing: inbox.announced is 0)
        else:  # the queued job that starts next, announced with this reply
            replies = inbox.announce(look=duration > ANNOUNCE_LOOK)
        try:
            send(*replies, _wire.pack_reply(kind, duration, payload, inbox.announced))
        except OSError:
            return 0
        del payload, replies
        keep.clear()
        _reap_orphans()
        if sandbox.retire:
            return 0


ANNOUNCE_LOOK = 0.001
"""After an attempt this long (seconds), look for cancels before announcing the next job even
when one is at hand (the caller may have cancelled it meanwhile)."""


def _reap_orphans() -> None:
    """Reap exited processes the attempt left (the worker is a subreaper: orphans of the
    task's children become its own), so none stays a zombie while the worker lives."""
    for _pid, _status in reaped():
        pass
