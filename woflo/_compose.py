"""Many runs at once: ``Task.map``, ``wait`` and ``as_completed`` (runs of any runners)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from woflo._rules import deadline_after, seconds_left, wait_seconds
from woflo._types import RunState
from woflo._upstream import RunGroup, RunLike, unmapped
from woflo.errors import OptionTypeError, OptionValueError, WaitTimeout

if TYPE_CHECKING:
    from woflo._run import BaseTaskRun
    from woflo._task import Task

R = TypeVar("R")

FIRST_COMPLETED = "FIRST_COMPLETED"
"""``wait()`` returns when any run is final."""
FIRST_EXCEPTION = "FIRST_EXCEPTION"
"""``wait()`` returns when any run ends other than completed (or all are final)."""
ALL_COMPLETED = "ALL_COMPLETED"
"""``wait()`` returns when every run is final."""
_RETURN_WHEN = (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED)


def map_runs(task: Task[..., R], iterables: tuple[Any, ...], kwargs: dict[str, Any]) -> RunGroup[R]:
    """:meth:`Task.map`: one run per item of the zipped iterables."""
    columns: list[tuple[Any, Any]] = []  # (position or keyword, the items)
    constants: dict[Any, Any] = {}
    pairs: Iterable[tuple[Any, Any]] = itertools.chain(enumerate(iterables), kwargs.items())
    for key, value in pairs:
        if type(value) is unmapped:
            constants[key] = value.value
            continue
        if isinstance(value, RunLike):
            raise OptionTypeError(
                f"{task.name}.map() cannot iterate run {getattr(value, 'run_id', value)}: its "
                "value is not known "
                "yet; map over a list of runs (or a RunGroup), or pass it with unmapped(run)"
            )
        try:
            items = value if isinstance(value, Sequence) else list(value)
        except TypeError:
            raise OptionTypeError(
                f"{task.name}.map() takes iterables to map over, not {value!r}; pass a value "
                "for every run with unmapped(value)"
            ) from None
        columns.append((key, items))
    if not columns:
        raise OptionTypeError(
            f"{task.name}.map() needs at least one iterable to map over (every argument is "
            "unmapped)"
        )
    lengths = {len(items) for _key, items in columns}
    if len(lengths) > 1:
        sizes = ", ".join(map(str, sorted(lengths)))
        raise OptionValueError(
            f"{task.name}.map() got iterables of different lengths ({sizes}); give them the "
            "same length, or pass one value to every run with unmapped(value)"
        )
    runs = []
    for row in zip(*(items for _key, items in columns), strict=True):
        given = dict(constants)
        given.update(zip((key for key, _items in columns), row, strict=True))
        positional = tuple(given.pop(i) for i in range(len(iterables)))
        runs.append(task(*positional, **{str(k): v for k, v in given.items()}))
    return RunGroup(runs)


# ---- waiting on many runs -------------------------------------------------------------------


def wait(
    runs: Iterable[BaseTaskRun[Any]],
    timeout: float | None = None,
    return_when: str = ALL_COMPLETED,
) -> tuple[set[BaseTaskRun[Any]], set[BaseTaskRun[Any]]]:
    """Wait for runs of any runners, like ``concurrent.futures.wait``.

    :param return_when: :data:`ALL_COMPLETED` (default), :data:`FIRST_COMPLETED`, or
        :data:`FIRST_EXCEPTION` (any run ended other than completed).
    :return: ``(done, not_done)``: the runs final by then, and the others.
    """
    if return_when not in _RETURN_WHEN:
        raise OptionValueError(
            f"return_when takes FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED, "
            f"not {return_when!r}"
        )
    seconds = wait_seconds(timeout)
    pending = set(_runs(runs, "wait"))
    done = {run for run in pending if not run.is_running()}
    pending -= done

    def enough() -> bool:
        if not pending:
            return True
        if return_when == FIRST_COMPLETED:
            return bool(done)
        if return_when == FIRST_EXCEPTION:
            return any(run.state is not RunState.COMPLETED for run in done)
        return False

    if enough():
        return done, pending
    changed = threading.Condition()

    def one_done(run: BaseTaskRun[Any]) -> None:
        with changed:
            if run in pending:
                pending.discard(run)
                done.add(run)
            changed.notify_all()

    watched = list(pending)
    for run in watched:
        run.add_done_callback(one_done)
    try:
        with changed:
            changed.wait_for(enough, seconds)
            return set(done), set(pending)
    finally:
        for run in watched:
            run.remove_done_callback(one_done)


def as_completed(
    runs: Iterable[BaseTaskRun[Any]], timeout: float | None = None, *, progress: bool = False
) -> Iterator[BaseTaskRun[Any]]:
    """Yield runs of any runners as they end (those already final first), like
    ``concurrent.futures.as_completed``.

    :param progress: show a progress bar on stderr meanwhile (:func:`woflo.progress`).
    :raises woflo.errors.WaitTimeout: when ``timeout`` seconds pass before the last one ends.
    """
    import queue

    deadline = deadline_after(timeout)
    unique = list(dict.fromkeys(_runs(runs, "as_completed")))
    ended: queue.SimpleQueue[BaseTaskRun[Any]] = queue.SimpleQueue()
    bar = None
    if progress:
        from woflo._progress import Progress

        bar = Progress(unique)
    for run in unique:
        run.add_done_callback(ended.put)
    try:
        for left in range(len(unique), 0, -1):
            try:
                run = ended.get(timeout=seconds_left(deadline))
            except queue.Empty:
                raise WaitTimeout(
                    f"{left} of {len(unique)} runs still going after {timeout} s; they go on"
                ) from None
            if bar is not None:
                bar.update()
            yield run
    finally:
        for run in unique:
            run.remove_done_callback(ended.put)
        if bar is not None:
            bar.close()


def _runs(runs: Iterable[Any], where: str) -> list[BaseTaskRun[Any]]:
    if isinstance(runs, RunLike):
        raise OptionTypeError(
            f"{where}() takes an iterable of runs (a list, a RunGroup), not a run"
        )
    result = list(runs)
    for run in result:
        if not isinstance(run, RunLike):
            raise OptionTypeError(f"{where}() takes runs, not {run!r}")
    return result
