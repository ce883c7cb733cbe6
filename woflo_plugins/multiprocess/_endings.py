"""How an attempt in a worker ends, in the caller's terms: the outcome each ending means, and
reporting it to the run (once) through the core's public runner interface."""

from __future__ import annotations

import signal
import sys
from typing import Any

from woflo import Outcome, TaskCall, remote
from woflo.errors import TaskCrashed, TaskStopped
from woflo_plugins.multiprocess._schedule import Job


def from_reply(job: Job, kind: bytes, duration: float, blob: memoryview) -> Outcome:
    """The outcome a worker's reply carries: its value (``b"o"``) or its exception (``b"e"``);
    upper case when the worker retires after it."""
    if kind in (b"o", b"O"):
        try:
            return Outcome(value=remote.loads(blob), duration=duration)
        except BaseException as exc:
            exc.add_note(
                f"(raised while unpickling the result of task {job.call.task_name!r} "
                "in the calling process)"
            )
            return Outcome(error=exc, duration=duration)
    try:
        error = remote.load_exception(blob)
    except BaseException as exc:
        error = exc
    return Outcome(error=error, duration=duration)


def stopped(job: Job) -> TaskStopped:
    """The error of an attempt killed on request (a stop, or its deadline)."""
    return TaskStopped(
        f"attempt {job.call.attempt} of task {job.call.task_name!r} (run {job.call.run_id}) "
        "was killed on request"
    )


def crashed(job: Job, pid: int, exitcode: int) -> TaskCrashed:
    """The error of an attempt whose worker died: the signal or the exit code, and the pid."""
    how = (
        f"was killed by signal {_signal_name(-exitcode)}"
        if exitcode < 0
        else f"exited with code {exitcode}"
    )
    return TaskCrashed(
        f"the worker process (pid {pid}) running task {job.call.task_name!r} "
        f"(run {job.call.run_id}, attempt {job.call.attempt}) {how}",
        pid=pid,
        exitcode=exitcode,
    )


def detach(job: Job) -> tuple[Any, TaskCall]:
    """The run and call of ``job``, whose attempt is over, once (then ``None`` for the run).

    The job lets go of the run and of the arguments' pickle: the run refers to the job, and
    that cycle would keep them (a 100 MB argument, twice) alive after the caller dropped the
    run, until the gc ran."""
    run, job.run = job.run, None
    job.args_blob = b""
    return run, job.call


def started(job: Job, pid: int) -> None:
    """Report the start of ``job``'s attempt, in worker ``pid``, unless it is over already."""
    run = job.run
    if run is not None:
        run.report_started(job.call, pid=pid)


def report(job: Job, outcome: Outcome) -> None:
    """Report the end of ``job``'s attempt to its run, here and now, once."""
    run, call = detach(job)
    if run is not None:
        run.report_finished(call, outcome)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def internal_error(error: BaseException, what: str) -> None:
    """Log a fault of the pool itself (not of a run) on the ``woflo.multiprocess`` logger."""
    import logging

    logging.getLogger("woflo.multiprocess").error(what, exc_info=error)


def emit_log(record: dict[str, Any]) -> None:
    """Hand a worker's log record to the caller's logging; a handler that raises is the
    caller's problem, said on stderr, never the worker's (nothing is killed for it)."""
    try:
        remote.emit_record(record)
    except Exception:
        import traceback

        sys.stderr.write(
            f"woflo: a logging handler raised on a record of run {record.get('run_id')}:\n"
        )
        traceback.print_exc()
