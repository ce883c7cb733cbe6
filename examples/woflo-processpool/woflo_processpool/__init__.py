"""``ProcessPoolTaskRun``: each attempt in a ``concurrent.futures.ProcessPoolExecutor`` worker.

Built on :mod:`woflo.remote`: the worker loads the caller's plugins, runs the attempt through
their execution wrappers (log context, tracing) and sends back the outcome with its log records.
Workers start by ``forkserver``, which imports the main script: guard its task calls with
``if __name__ == "__main__":``. A running attempt cannot be killed (its result is discarded).
"""

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from woflo import BaseTaskRun, TaskCall, hookimpl, remote

__all__ = ["ProcessPoolTaskRun"]
_executor: list[ProcessPoolExecutor] = []
_lock = threading.Lock()


def _pool() -> ProcessPoolExecutor:
    with _lock:
        if not _executor:
            context = multiprocessing.get_context("forkserver")
            _executor.append(
                ProcessPoolExecutor(mp_context=context, initializer=remote.init_worker)
            )
        return _executor[0]


class ProcessPoolTaskRun(BaseTaskRun[Any]):
    """Runs every attempt in a process pool worker; calling the task never blocks."""

    name = "processpool"

    def prepare(self) -> None:
        remote.prepare(self)  # a task or argument that cannot be pickled fails at the call

    def start_attempt(self, call: TaskCall) -> None:
        self._future = _pool().submit(remote.run_attempt, remote.pack_attempt(self, call))
        self.report_started(call)
        self._future.add_done_callback(lambda f: self.report_finished(call, remote.outcome_of(f)))

    def kill_attempt(self, call: TaskCall) -> None:
        self._future.cancel()  # drops it if it waits; a running attempt runs to its end


@hookimpl
def woflo_add_runners() -> list[type[BaseTaskRun[Any]]]:
    return [ProcessPoolTaskRun]
