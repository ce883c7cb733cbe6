"""For runners that execute attempts in another process: what woflo's own workers do.

A runner that sends attempts elsewhere (a process pool, a cluster) needs the pieces woflo's
multiprocess runner has; this module is them, and the multiprocess and Dask runners use it too::

    caller (the runner)                               the other process
    -------------------                               -----------------
    prepare():  remote.prepare(run)      fails at the call if the task or arguments don't pickle
    start_attempt(call):
        attempt = remote.pack_attempt(run, call)  --> result = remote.run_attempt(attempt)
                                                        loads the caller's plugins (same
                                                        manifest, per-task plugins, disabled
                                                        ones stay off), runs the attempt through
                                                        the woflo_execute_attempt wrappers (log
                                                        context, tracing), captures its logs
        run.report_finished(call, result.outcome())  <-- value or exception (its type kept, the
                                                        remote traceback as __cause__), duration,
                                                        log records replayed on the caller's
                                                        loggers

Pickling policy (:func:`dumps`, :func:`loads`): plain ``pickle`` when it can do, by reference
for importable functions and classes; cloudpickle by value for ``__main__``, closures, lambdas
and ``@task`` functions defined in a script. Results go back with the caller's ``__main__``
objects by reference (:func:`dumps_result`), so ``except MyError:`` in the script works.

Exceptions (:func:`dump_exception`, :func:`load_exception`): the original type whenever the
caller can load it (rebuilt without ``__init__`` if its constructor does not round-trip),
else :class:`~woflo.errors.RemoteTaskError`; the remote traceback is always ``__cause__``.
"""

from __future__ import annotations

import logging
import pickle
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from woflo._logroute import (
    FORWARDED,
    emit_record,
    forward_log,
    init_worker,
    is_dedicated,
    log_context,
    pickle_record,
    route_structlog,
    start_capture,
    stop_capture,
)
from woflo._pickling import (
    PROTOCOL,
    dump_arguments,
    dump_exception,
    dump_task,
    dumps_for_caller,
    dumps_for_worker,
    load_exception,
)
from woflo._rules import start_loading, stop_loading
from woflo._types import Outcome, TaskCall
from woflo.errors import TaskCrashed, TaskStopped

if TYPE_CHECKING:
    from woflo._run import BaseTaskRun
    from woflo._task import Task

__all__ = [
    "FORWARDED",
    "PROTOCOL",
    "RemoteAttempt",
    "RemoteResult",
    "dump_arguments",
    "dump_exception",
    "dump_task",
    "dumps",
    "dumps_result",
    "emit_record",
    "execute",
    "forward_log",
    "init_worker",
    "load_exception",
    "load_part",
    "load_plugins",
    "loads",
    "log_context",
    "outcome_of",
    "pack_attempt",
    "pack_outcome",
    "pickle_record",
    "prepare",
    "route_structlog",
    "run_attempt",
    "task_blob",
]

Manifest = tuple[tuple[str, str, "str | None", "str | None"], ...]

dumps = dumps_for_worker
"""Pickle ``obj`` to send to another process (the policy above)."""
dumps_result = dumps_for_caller
"""Pickle ``obj`` in a worker to send back to the caller."""
loads = pickle.loads
"""Unpickle what :func:`dumps` or :func:`dumps_result` made."""


# ---- in the caller ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteAttempt:
    """Everything another process needs to execute one attempt; plain data, picklable.

    :ivar task_name: ``call.task_name``.
    :ivar run_id: ``call.run_id``.
    :ivar attempt: ``call.attempt``.
    :ivar token: identifies the task, so the other process unpickles it once.
    :ivar task: the pickled :class:`~woflo.Task` (its function, options, per-task plugins).
    :ivar arguments: the pickled ``(args, kwargs)``.
    :ivar plugins: the caller's plugin manifest (:meth:`woflo.plugins.PluginSystem.manifest`).
    :ivar log_level: the caller's root log level: records below it are not sent.
    :ivar preload: modules the caller uses that the attempt's plugins look for (structlog),
        imported before the attempt so that, as in woflo's own workers, the run's context is
        bound for the task.
    :ivar context: ``call.context``: what plugins send along (``woflo_attempt_context``).
    """

    task_name: str
    run_id: str
    attempt: int
    token: bytes
    task: bytes
    arguments: bytes
    plugins: Manifest
    log_level: int
    preload: tuple[str, ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict)


_task_blobs: weakref.WeakKeyDictionary[Any, tuple[bytes, bytes]] = weakref.WeakKeyDictionary()
_run_arguments: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def task_blob(task: Task[..., Any]) -> tuple[bytes, bytes]:
    """A token and the pickle of ``task``, made once per task.

    :raises woflo.errors.ArgumentNotPicklable: if the task cannot be pickled.
    """
    blob = _task_blobs.get(task)
    if blob is None:
        import os

        blob = _task_blobs.setdefault(task, (os.urandom(8), dump_task(task)))
    return blob


def prepare(run: BaseTaskRun[Any]) -> None:
    """Pickle the run's task and arguments now, in :meth:`~woflo.BaseTaskRun.prepare`, so a
    call whose task or arguments cannot be sent fails at the call, naming the culprit.

    :raises woflo.errors.ArgumentNotPicklable: naming the argument that does not pickle.
    """
    task_blob(run.task)
    _run_arguments[run] = dump_arguments(run.task.name, run.args, run.kwargs)


def pack_attempt(run: BaseTaskRun[Any], call: TaskCall) -> RemoteAttempt:
    """What :func:`run_attempt` needs to execute ``call`` of ``run`` in another process."""
    from woflo.plugins import get_plugin_system

    token, blob = task_blob(run.task)
    arguments = _run_arguments.get(run) if call.args is run.args else None
    if arguments is None or call.kwargs is not run.kwargs:
        arguments = dump_arguments(call.task_name, call.args, call.kwargs)
    return RemoteAttempt(
        call.task_name,
        call.run_id,
        call.attempt,
        token,
        blob,
        arguments,
        tuple(get_plugin_system().manifest()),
        logging.getLogger().getEffectiveLevel(),
        PRELOAD if "structlog" in sys.modules else (),
        dict(call.context),
    )


PRELOAD = ("structlog",)
"""What :func:`pack_attempt` asks the other process to import when the caller imported it."""


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """How an attempt ended in another process; plain data, picklable.

    :ivar ok: whether the task returned.
    :ivar payload: the pickled value (``ok``) or the packed exception.
    :ivar duration: seconds the attempt took there.
    :ivar records: its log records, pickled, in the order they were logged.
    """

    ok: bool
    payload: bytes
    duration: float
    records: tuple[bytes, ...] = ()

    def outcome(self) -> Outcome:
        """In the caller: hand the log records to the caller's loggers, and return the
        attempt's :class:`~woflo.Outcome` (a result that does not unpickle is its error)."""
        for record in self.records:
            emit_record(record)
        if not self.ok:
            return Outcome(error=load_exception(self.payload), duration=self.duration)
        try:
            return Outcome(value=loads(self.payload), duration=self.duration)
        except BaseException as exc:
            exc.add_note("(raised while unpickling the result of the task in the calling process)")
            return Outcome(error=exc, duration=self.duration)


def outcome_of(future: Any) -> Outcome:
    """The outcome of a done ``concurrent.futures.Future`` of :func:`run_attempt`.

    A cancelled future is a stop (:class:`~woflo.errors.TaskStopped`), a broken executor
    (``BrokenExecutor``: its worker died) a crash (:class:`~woflo.errors.TaskCrashed`); any
    other exception of the future is the attempt's error.
    """
    if future.cancelled():
        return Outcome(error=TaskStopped("the attempt's future was cancelled"))
    error = future.exception()
    if error is None:
        result: RemoteResult = future.result()
        return result.outcome()
    from concurrent.futures import BrokenExecutor

    if isinstance(error, BrokenExecutor):
        crashed = TaskCrashed(f"the process running the attempt died: {error}")
        crashed.__cause__ = error
        return Outcome(error=crashed)
    return Outcome(error=error)


# ---- in the other process --------------------------------------------------------------------

_loaded: tuple[Manifest, Any] | None = None
_load_lock = threading.Lock()
_tasks: dict[bytes, Any] = {}


def load_plugins(manifest: Iterable[Sequence[Any]]) -> None:
    """Make the caller's plugins this process's plugins (once; again only if they differ).

    The manifest lists the entry-point plugins the caller loaded, so plugins disabled there
    (``WOFLO_DISABLE_PLUGINS``) stay off here and nothing scans the installed distributions.
    """
    global _loaded
    key: Manifest = tuple((str(n), str(v), d, ver) for n, v, d, ver in manifest)
    from woflo.plugins import PluginSystem, current_plugin_system, set_plugin_system

    with _load_lock:
        current = current_plugin_system()
        if _loaded is not None and _loaded[0] == key and _loaded[1] is current:
            return
        if current is None or tuple(map(tuple, current.manifest())) != key:
            current = PluginSystem.from_manifest(key)
            set_plugin_system(current)
            _tasks.clear()  # tasks built on the previous plugins
        _loaded = (key, current)


def run_attempt(attempt: RemoteAttempt) -> RemoteResult:
    """Execute ``attempt`` here, the way woflo's own workers do; never raises.

    Loads the caller's plugins (:func:`load_plugins`), unpickles the task (once per process)
    and the arguments, runs the attempt through the ``woflo_execute_attempt`` wrappers with its
    log records captured, and packs the outcome. A failure to unpickle or to pickle the result
    back is the attempt's error, with a note saying where it happened.
    """
    records: list[bytes] = []
    try:
        for module in attempt.preload:
            if module not in sys.modules:
                __import__(module)
        load_plugins(attempt.plugins)
        task = _tasks.get(attempt.token)
        if task is None:
            task = _tasks.setdefault(
                attempt.token, load_part(attempt.task, "the task", attempt.task_name)
            )
        args, kwargs = load_part(attempt.arguments, "the arguments", attempt.task_name)
    except BaseException as exc:
        return RemoteResult(False, dump_exception(exc), 0.0, tuple(records))
    if is_dedicated():
        logging.getLogger().setLevel(attempt.log_level)
    call = TaskCall(
        attempt.task_name, attempt.run_id, attempt.attempt, task.fn, args, kwargs, attempt.context
    )
    outcome = execute(task, call, emit=records.append)
    return RemoteResult(*pack_outcome(outcome, attempt.task_name), tuple(records))


def pack_outcome(outcome: Outcome, task_name: str) -> tuple[bool, bytes, float]:
    """``(ok, payload, duration)`` of an outcome, for :class:`RemoteResult`; a result that
    does not pickle becomes the attempt's error, noted."""
    if outcome.error is None:
        try:
            return True, dumps_result(outcome.value), outcome.duration
        except BaseException as exc:
            exc.add_note(
                f"(raised while pickling the result of task {task_name!r} to send it back: "
                f"{type(outcome.value).__qualname__} object)"
            )
            return False, dump_exception(exc), outcome.duration
    return False, dump_exception(outcome.error), outcome.duration


def load_part(blob: bytes | memoryview, what: str, task_name: str) -> Any:
    """Unpickle ``what`` ("the task", "the arguments") of a call; an error says where."""
    previous = start_loading(task_name)
    try:
        return loads(blob)
    except BaseException as exc:
        exc.add_note(
            f"(raised while unpickling {what} of task {task_name!r} in the worker process)"
        )
        raise
    finally:
        stop_loading(previous)


def execute(
    task: Task[..., Any], call: TaskCall, *, emit: Callable[[bytes], object] | None = None
) -> Outcome:
    """Execute ``call`` of ``task`` in this process through its plugins' execution wrappers.

    Log records logged during the attempt (in its thread and context) go to ``emit``, each
    pickled, tagged with ``task``, ``run_id`` and ``attempt``: ``None`` sends them to the sink
    of :func:`init_worker`, or, in a process that did not call it, leaves them to this
    process's own logging. Messages a plugin sends with :func:`forward_log` (the logging
    plugin's structlog events) go the same way.
    """
    context = {"task": call.task_name, "run_id": call.run_id, "attempt": call.attempt}
    token = start_capture(emit, context)
    try:
        return task.plugin_system.hooks.execute_attempt(call)
    finally:
        stop_capture(token)
