"""The built-in cache plugin: ``@task(cache=True)`` skips runs that already succeeded.

A run of a cached task is looked up by its key before its first attempt (in the call, or once
its upstream runs gave their values). A hit completes it at once with the stored value, with
no attempt: ``run.cached`` is ``True``, the lifecycle hooks fire, the logging plugin says
``task.cached``. A miss runs as usual and, once it completed, its value is stored by a
background thread (:mod:`woflo.cache`: an index in SQLite, each value a file written
atomically, under ``WOFLO_HOME/cache``). Failed, crashed, timed-out, stopped and
upstream-failed runs are never stored. Two runs of one key at once in a program execute once:
the second waits for the first and takes its value (or runs itself, if the first did not
complete).

The key (:mod:`._key`): the task's name, module, qualified name and source code (editing the
function invalidates its entries; the code it calls does not), and its arguments by name, by
value. ``cache_key=fn`` keys on ``fn(*args, **kwargs)`` instead.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Iterable
from typing import Any

from woflo import BaseTaskRun, Outcome, RunState, Task, TaskOption, hookimpl
from woflo.options import Validator, callable_or_none, invalid
from woflo.plugins import background_thread

__all__ = ["FLUSH_AT_EXIT", "CacheKeyError", "flush"]
# (keys, pickles, queues and dates are imported when a cached task first needs them: this
# plugin loads in every program and worker, most of which cache nothing)


def __getattr__(name: str) -> Any:
    if name == "CacheKeyError":
        from woflo_plugins.cache._key import CacheKeyError

        return CacheKeyError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


FLUSH_AT_EXIT = 10.0
"""Seconds the exit waits, at most, for values being stored."""

_EXPIRATION_EXPECTED = "seconds > 0 (at most 1e10) or a datetime.timedelta, or None (no expiry)"


def _check_switch(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise invalid("True, False or None", value, wrong_type=True)
    return value


_LONGEST = 10.0**10
"""The longest expiry, in seconds (over 300 years; beyond, dates overflow)."""


def _check_expiration(value: Any) -> float | None:
    if value is None:
        return None
    import datetime

    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise invalid(_EXPIRATION_EXPECTED, value, wrong_type=True)
    if not 0 < seconds <= _LONGEST:  # (nan and inf too: for no expiry, None)
        raise invalid(_EXPIRATION_EXPECTED, value)
    return seconds


@hookimpl
def woflo_add_options() -> list[TaskOption]:
    return [
        TaskOption(
            "cache",
            None,
            Validator("True, False or None", _check_switch),
            "reuse the value of a completed run with the same code and arguments "
            "(False: never, even with cache_key or cache_expiration)",
            caller_only=True,
        ),
        TaskOption(
            "cache_key",
            None,
            callable_or_none("a function (*args, **kwargs) -> key"),
            "the key to cache on, from the call's arguments (implies cache=True)",
            caller_only=True,
        ),
        TaskOption(
            "cache_expiration",
            None,
            Validator(_EXPIRATION_EXPECTED, _check_expiration),
            "seconds (or a timedelta) a cached value stays valid (implies cache=True)",
            caller_only=True,
        ),
    ]


class _State:
    """This program's runs of cached tasks, and the values on their way to the store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.leaders: dict[str, BaseTaskRun[Any]] = {}  # key -> the run executing for it
        self.keys: dict[str, str] = {}  # run id -> key, for the runs that may store a value
        self.saving: dict[str, Any] = {}  # key -> value, until it is in the store
        self.queue: Any = None  # (a queue.Queue of values to store, made by start())
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        with self.lock:
            if self.thread is None:
                import queue

                self.queue = queue.Queue()
                self.thread = background_thread(self._save_forever, "woflo-cache")
                self.thread.start()
                atexit.register(self.flush, FLUSH_AT_EXIT)

    def flush(self, timeout: float | None = None) -> bool:
        if self.thread is None:
            return True
        done = threading.Event()
        self.queue.put(("", "", done, None))  # (a marker: every value before it is stored)
        return done.wait(timeout)

    def _save_forever(self) -> None:
        from woflo import cache

        while True:
            item = self.queue.get()
            key, task, value, expiration = item
            if not key:
                value.set()
                continue
            try:
                cache.save(key, task, value, expiration)
            except Exception as exc:  # (never the end of this thread)
                print(f"woflo: cannot store a value in the cache: {exc!r}", file=sys.stderr)
            finally:
                with self.lock:
                    if self.saving.get(key) is value:
                        del self.saving[key]


_state = _State()
_NOTHING = object()


def flush(timeout: float | None = None) -> bool:
    """Wait (at most ``timeout`` seconds) until every value so far is in the store."""
    return _state.flush(timeout)


def _forget_in_child() -> None:  # a fork of the caller is another program
    global _state
    _state = _State()


os.register_at_fork(after_in_child=_forget_in_child)


def _cached(options: Any) -> bool:
    switch = options.get("cache")
    if switch is not None:  # (False: off, even with a key or an expiry)
        return bool(switch)
    return options.get("cache_key") is not None or options.get("cache_expiration") is not None


@hookimpl
def woflo_idle_hooks(task: Task[..., Any]) -> Iterable[str]:
    if _cached(task.options):
        return ()
    return ("woflo_cached_outcome", "woflo_run_finished")  # (a task that does not cache)


@hookimpl
def woflo_cached_outcome(run: BaseTaskRun[Any]) -> Outcome | BaseTaskRun[Any] | None:
    task = run.task
    options = task.options
    if not _cached(options):
        return None
    import pickle

    from woflo_plugins.cache._key import default_key, user_key

    key_fn = options.get("cache_key")
    args, kwargs = run.args, dict(run.kwargs)
    if key_fn is not None:
        key = user_key(task.name, task.fn, key_fn, args, kwargs)
    else:
        key = default_key(task.name, task.fn, args, kwargs)
    state = _state
    with state.lock:
        leader = state.leaders.get(key)
        value = state.saving.get(key, _NOTHING)
        if leader is not None or value is _NOTHING:
            state.keys[run.run_id] = key  # (a follower stores, if it ends up running itself)
    if leader is not None:
        return leader
    if value is not _NOTHING:
        return Outcome(value=pickle.loads(value))  # (a copy of its own, as from the store)
    from woflo import cache

    found, value = cache.load(key)
    with state.lock:
        if found:
            state.keys.pop(run.run_id, None)
            return Outcome(value=value)
        leader = state.leaders.get(key)
        if leader is not None:
            return leader
        data = state.saving.get(key, _NOTHING)
        if data is _NOTHING:
            state.leaders[key] = run
            return None
        state.keys.pop(run.run_id, None)  # (a run of the key ended meanwhile)
    return Outcome(value=pickle.loads(data))


@hookimpl
def woflo_run_finished(run: BaseTaskRun[Any]) -> None:
    state = _state
    if run.run_id not in state.keys:  # (a run of a task that does not cache: no lock taken;
        return  # only its own lookup, done before, puts its id there)
    with state.lock:
        key = state.keys.pop(run.run_id, None)
        if key is None:
            return
        if state.leaders.get(key) is run:
            del state.leaders[key]
        if run.state is not RunState.COMPLETED or run.cached:
            return
    from woflo import cache

    # pickled now, as it is: what the caller does to the value later is not stored
    data = cache.dumps(run.get_result(), run.task.name)
    if data is None:
        return
    with state.lock:
        state.saving[key] = data
    state.start()
    state.queue.put((key, run.task.name, data, run.task.options.get("cache_expiration")))
