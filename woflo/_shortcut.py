"""What a run does with what a cache answered (:func:`take`), and a run that takes its value
from another run of the same key still going (:func:`follow`): it waits for that run (a
done-callback, no thread; a blocking runner's call waits in its thread), then completes with
its value, or runs its own attempts if that run did not complete."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from woflo._types import Outcome, RunState

if TYPE_CHECKING:
    from woflo._run import BaseTaskRun


def take(
    run: BaseTaskRun[Any],
    shortcut: Outcome | BaseTaskRun[Any] | None,
    end: Callable[..., object],
    start: Callable[[], object],
) -> None:
    """Go on with what ``woflo_cached_outcome`` answered: ``start()`` the attempts (nothing
    known), ``end()`` the run completed with the value, or follow the run that will have it."""
    if shortcut is None:
        start()
    elif isinstance(shortcut, Outcome):
        end(RunState.COMPLETED, shortcut, cached=True)
    else:
        follow(run, shortcut, lambda outcome: end(RunState.COMPLETED, outcome, cached=True), start)


def follow(
    run: BaseTaskRun[Any],
    leader: BaseTaskRun[Any],
    take: Callable[[Outcome], object],
    start: Callable[[], object],
) -> None:
    """Once ``leader`` is final: ``take()`` its value, or ``start()`` ``run``'s attempts."""

    def go_on(_leader: object = None) -> None:
        if run.state.is_final:  # stopped meanwhile
            return
        if leader.state is RunState.COMPLETED:
            take(Outcome(value=leader.get_result()))
        else:
            start()

    if not run.blocking:
        leader.add_done_callback(go_on)
        return
    ready = threading.Event()
    leader.add_done_callback(lambda _leader: ready.set())
    run.add_done_callback(lambda _run: ready.set())  # (a stop from another thread)
    ready.wait()
    go_on()
