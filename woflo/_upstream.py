"""Runs as arguments of other runs: finding them, waiting for them, putting values in place.

A call whose arguments hold runs (at top level or anywhere inside lists, tuples, named
tuples, sets and dict values; a :class:`RunGroup` stands for the list of its values) makes a
run that depends on them: :class:`woflo.BaseTaskRun` waits for them (a :class:`Countdown`
done-callback on each, no thread), then ends ``upstream_failed`` if one did not complete
(:func:`upstream_failed`; :class:`allow_failure` lets one fail), else runs with the values in
place (:func:`resolved_arguments`). Other containers are passed as they are, unsearched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from woflo._rules import deadline_after, seconds_left
from woflo._types import Outcome, RunState
from woflo.errors import OptionTypeError, UpstreamFailed

if TYPE_CHECKING:
    from woflo._run import BaseTaskRun

R = TypeVar("R")
T = TypeVar("T")


class RunLike:
    """What :class:`woflo.BaseTaskRun` is, for the search of arguments (no import of it)."""

    __slots__ = ()


class unmapped(Generic[T]):
    """In :meth:`Task.map`, pass ``value`` as it is to every run instead of iterating it."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"


class allow_failure(Generic[R]):
    """As an argument, ``run`` does not fail the new run when it does not complete: the new
    run gets the upstream's value if it completed, else its exception object."""

    __slots__ = ("run",)

    def __init__(self, run: BaseTaskRun[R] | RunGroup[R]) -> None:
        if not isinstance(run, RunLike | RunGroup):
            raise OptionTypeError(f"allow_failure() takes a run or a RunGroup, not {run!r}")
        self.run = run

    def __repr__(self) -> str:
        return f"allow_failure({self.run!r})"


class RunGroup(Sequence["BaseTaskRun[R]"]):
    """Runs started together (:meth:`Task.map`): a sequence of them, used as one.

    As an argument of another task it stands for the list of its values, in order.
    """

    __slots__ = ("_runs",)

    def __init__(self, runs: Iterable[BaseTaskRun[R]]) -> None:
        self._runs = tuple(runs)
        for run in self._runs:
            if not isinstance(run, RunLike):
                raise OptionTypeError(f"a RunGroup holds runs, not {run!r}")

    @overload
    def __getitem__(self, index: int) -> BaseTaskRun[R]: ...
    @overload
    def __getitem__(self, index: slice) -> RunGroup[R]: ...
    def __getitem__(self, index: int | slice) -> BaseTaskRun[R] | RunGroup[R]:
        if isinstance(index, slice):
            return RunGroup(self._runs[index])
        return self._runs[index]

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[BaseTaskRun[R]]:
        return iter(self._runs)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for run in self._runs:
            counts[run.state.value] = counts.get(run.state.value, 0) + 1
        states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        return f"<RunGroup of {len(self._runs)} runs: {states or 'none'}>"

    def get_result(self, timeout: float | None = None, *, progress: bool = False) -> list[R]:
        """Wait for the runs and return their values, in order; raise the error of the first
        run, in order, that did not complete (the others go on).

        :param progress: show a progress bar on stderr while waiting (:func:`woflo.progress`).
        :raises woflo.errors.WaitTimeout: if ``timeout`` expires first.
        """
        if progress:
            from woflo._progress import progress as show

            show(self._runs, timeout=timeout)
        deadline = deadline_after(timeout)
        return [run.get_result(seconds_left(deadline)) for run in self._runs]

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every run is final, or ``timeout`` passes: whether all are final."""
        deadline = deadline_after(timeout)
        return all(run.wait(seconds_left(deadline)) for run in self._runs)

    def stop(self) -> int:
        """Stop every run still going; how many this call stopped."""
        return sum(run.stop() for run in self._runs)

    def is_running(self) -> bool:
        """Whether any run is still going."""
        return any(run.is_running() for run in self._runs)

    def __await__(self) -> Any:
        """``await group``: the list of values (the first error, in order, raised)."""
        from woflo._aio import results_of

        return results_of(self._runs).__await__()


# ---- runs as arguments ----------------------------------------------------------------------

_ATOMIC = frozenset({int, float, str, bytes, bool, type(None), complex, bytearray, range})
_CONTAINERS = (list, tuple, set, frozenset, dict)


def find_upstream(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[BaseTaskRun[Any]]:
    """Every run among the arguments, at any depth (empty: none; the common case is cheap)."""
    found: list[BaseTaskRun[Any]] = []
    for value in args:
        if type(value) not in _ATOMIC:
            _collect(value, found, set())
    for value in kwargs.values():
        if type(value) not in _ATOMIC:
            _collect(value, found, set())
    return found


def _collect(
    value: Any, found: list[BaseTaskRun[Any]], seen: set[int], *, allowed: bool = True
) -> None:
    """Append the runs in ``value`` to ``found`` (those passed as :class:`allow_failure`
    too, unless not ``allowed``); ``seen``: the containers visited (a list may hold itself)."""
    kind = type(value)
    if kind in _ATOMIC:
        return
    if isinstance(value, RunLike):
        found.append(value)  # type: ignore[arg-type]
    elif kind is RunGroup:
        found.extend(value)
    elif kind is allow_failure:
        if allowed:
            _collect(value.run, found, seen)
    elif kind in _CONTAINERS or _is_namedtuple(value):
        if id(value) in seen:
            return
        seen.add(id(value))
        for item in value.values() if kind is dict else value:
            if type(item) not in _ATOMIC:
                _collect(item, found, seen, allowed=allowed)


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")


def _resolved(value: Any) -> Any:
    """``value`` with every run in place of its value (runs are final, upstreams completed
    or allowed to fail)."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if isinstance(value, RunLike):
        return value.get_result()  # type: ignore[attr-defined]
    if kind is RunGroup:
        return [run.get_result() for run in value]
    if kind is allow_failure:
        inner = value.run
        if type(inner) is RunGroup:
            return [_value_or_error(run) for run in inner]
        return _value_or_error(inner)
    if kind is dict:
        return {key: _resolved(item) for key, item in value.items()}
    if kind in (list, set, frozenset):
        return kind(_resolved(item) for item in value)
    if kind is tuple:
        return tuple(_resolved(item) for item in value)
    if _is_namedtuple(value):
        return kind(*(_resolved(item) for item in value))
    return value


def _value_or_error(run: Any) -> Any:
    error = run.exception()
    return run.get_result() if error is None else error


def resolved_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments with every (final) run in place of its value."""
    return tuple(_resolved(v) for v in args), {k: _resolved(v) for k, v in kwargs.items()}


def upstream_failed(run: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The :class:`~woflo.errors.UpstreamFailed` that ends ``run``: its first upstream run
    that did not complete (and may not fail), or ``None`` if every one is fine."""
    failed = _failed_upstream(args, kwargs)
    if failed is None:
        return None
    error = UpstreamFailed(
        f"run {run.run_id} of task {run.task.name!r} did not start: its upstream run "
        f"{failed.run_id} of task {failed.task.name!r} ended {failed.state.value}",
        run=failed,
    )
    error.__cause__ = failed.exception()
    return error


def wait_for_upstream(
    run: BaseTaskRun[Any],
    upstream: list[BaseTaskRun[Any]],
    end: Callable[[RunState, Outcome], object],
    start: Callable[[], object],
) -> None:
    """Have ``run`` wait for the ``upstream`` runs among its arguments, then ``start()`` its
    attempts with their values in place, or ``end()`` it (``upstream_failed``, or ``failed`` if
    preparing it fails). No thread waits (a :class:`Countdown` callback on each run), except
    that a blocking runner's call waits in the calling thread, then runs, as its calls do."""
    distinct = list(dict.fromkeys(upstream))

    def go_on() -> None:
        if run.state.is_final:  # stopped meanwhile
            return
        error = upstream_failed(run, run.args, run.kwargs)
        if error is not None:
            end(RunState.UPSTREAM_FAILED, Outcome(error=error))
            return
        try:
            run.args, run.kwargs = resolved_arguments(run.args, run.kwargs)
            run.prepare()
        except Exception as exc:  # (an argument that cannot be sent, say): the run fails
            end(RunState.FAILED, Outcome(error=exc))
            return
        start()

    ready = threading.Event() if run.blocking else None
    countdown = Countdown(len(distinct), ready.set if ready is not None else go_on)
    for upstream_run in distinct:
        upstream_run.add_done_callback(countdown)
    if ready is not None:
        run.add_done_callback(lambda _run: ready.set())  # (a stop from another thread)
        ready.wait()
        go_on()


class Countdown:
    """Calls ``then()`` once it has been called ``count`` times (as a done-callback of each
    upstream run: no thread waits)."""

    __slots__ = ("left", "lock", "then")

    def __init__(self, count: int, then: Callable[[], object]) -> None:
        self.left = count
        self.lock = threading.Lock()
        self.then = then

    def __call__(self, _run: Any) -> None:
        with self.lock:
            self.left -= 1
            if self.left:
                return
        self.then()


def _failed_upstream(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The first upstream run, in argument order, that did not complete and may not fail."""
    required: list[BaseTaskRun[Any]] = []
    seen: set[int] = set()
    for value in (*args, *kwargs.values()):
        _collect(value, required, seen, allowed=False)
    return next((run for run in required if run.state is not RunState.COMPLETED), None)
