"""asyncio: awaiting runs without blocking the event loop, and running ``async def`` tasks.

Imported only when something awaits a run or an attempt returns a coroutine, so that
``import woflo`` does not import asyncio.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Iterable
from typing import Any

from woflo._threads import background_thread


async def result_of(run: Any) -> Any:
    """The run's value (or its error, raised), waited for on the running loop: a callback of
    the run's wakes the loop from whichever thread ends the run."""
    if run.is_running():
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def done(_run: Any) -> None:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # the loop closed meanwhile: nobody waits any more
                pass

        run.add_done_callback(done)
        try:
            await future  # (cancelling the await leaves the run going: stop() ends it)
        finally:
            run.remove_done_callback(done)
    return run.get_result()


async def results_of(runs: Iterable[Any]) -> list[Any]:
    """Every run's value, in order (the first error, in order, raised)."""
    return [await result_of(run) for run in runs]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run an ``async def`` task's coroutine to completion in an event loop of its own.

    Where an event loop already runs in this thread (a sequential task called from async
    code), the coroutine runs in a loop on a helper thread, with this thread's context, and
    this thread waits for it, as a sequential call does (``await`` a run of another runner to
    leave the loop free)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    context = contextvars.copy_context()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = context.run(asyncio.run, coro)
        except BaseException as error:  # the task's own, raised in the caller's thread
            result["error"] = error

    thread = background_thread(target, "woflo-async-task")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
