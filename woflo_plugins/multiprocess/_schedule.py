"""The pool's scheduling policy: which job goes to which worker, and when to start workers.

Plain data, no I/O and no threads: :class:`Schedule` is held under the pool's lock, and the pool
(:mod:`._pool`) does what it decides (sends jobs, asks the zygote for workers, kills them).

* A job goes to an idle worker at once; otherwise it waits (``pending``) while a worker starts.
* Workers start immediately while fewer than ``os.cpu_count() + 2`` exist (a worker waiting for
  its next call while another is served keeps the cores busy: 2,000 no-ops on 2 cores ran at
  134 us/call with 2 workers, 116 with 4). Beyond that, only once jobs have waited
  ``SPAWN_DELAY`` with no attempt finishing meanwhile, so a burst of tiny calls is served by
  warm workers and slow calls each get their own.
* ``max_workers`` caps the workers; ``max_concurrency`` caps the running jobs of one task.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from typing import Any

from woflo import TaskCall
from woflo_plugins.multiprocess._channel import Channel

SPAWN_DELAY = 0.05
"""Seconds jobs wait, with no attempt finishing, before more than the eager workers start."""
MAX_STARTING = 4
"""Most workers starting at once."""


class TaskEntry:
    """A task pickled once for the workers, with the token they know it by."""

    __slots__ = ("blob", "token")

    def __init__(self, token: bytes, blob: bytes):
        self.token = token
        self.blob = blob


class Job:
    """One attempt to hand to a worker."""

    __slots__ = (
        "args_blob",
        "call",
        "enqueued",
        "entry",
        "killed",
        "limit",
        "run",
        "worker",
        "world",
    )

    def __init__(
        self,
        run: Any,
        call: TaskCall,
        entry: TaskEntry,
        args_blob: bytes,
        limit: int | None,
        world: Any = None,
    ):
        self.world = world  # the caller's directory and environment as of the call
        self.run: Any = run  # None once the attempt is over (see Pool._ended)
        self.call = call
        self.entry = entry  # one per Task, so id() counts per task
        self.args_blob = args_blob
        self.limit = limit
        self.worker: Worker | None = None
        self.enqueued = 0.0
        self.killed = False

    def frame_size(self) -> int:
        """An upper bound of the size of the frame that hands this job to a worker."""
        return len(self.args_blob) + len(self.entry.blob) + 4 * len(self.call.task_name) + 256


class Worker:
    """A worker process, from the request to the zygote until its exit is reported."""

    __slots__ = (
        "conn",
        "eof",
        "exitcode",
        "idle_since",
        "job",
        "kill_at",
        "known",
        "pid",
        "runs",
        "token",
        "world",
    )

    def __init__(self, token: bytes, conn: Channel):
        self.token = token
        self.runs = 0
        self.world: tuple[str | None, int] = (None, 0)  # the caller's it last got
        self.conn = conn
        self.pid = 0
        self.job: Job | None = None
        self.known: set[bytes] = set()
        self.idle_since = 0.0
        self.kill_at: float | None = None
        self.eof = False
        self.exitcode: int | None = None


class Schedule:
    """Jobs waiting, workers idle, starting and alive; not thread-safe (the pool locks it)."""

    def __init__(
        self,
        new_worker: Callable[[], Worker],
        *,
        max_workers: int | None,
        eager: int | None = None,
    ) -> None:
        self._new_worker = new_worker
        self.max_workers = max_workers
        self.eager = eager if eager is not None else (os.cpu_count() or 2) + 2
        self.pending: collections.deque[Job] = collections.deque()
        self.idle: list[Worker] = []
        self.starting: dict[bytes, Worker] = {}
        self.alive: dict[int, Worker] = {}
        self.running: collections.Counter[int] = collections.Counter()
        self.limited_pending = 0  # pending jobs with a max_concurrency: only they need a scan
        self.last_finish = 0.0

    def allowed(self, job: Job) -> bool:
        """Whether ``job``'s task may run one more attempt now (its ``max_concurrency``)."""
        return job.limit is None or self.running[id(job.entry)] < job.limit

    def enqueue(self, job: Job, now: float) -> None:
        """``job`` waits for a worker."""
        job.enqueued = now
        self.pending.append(job)
        self.limited_pending += job.limit is not None

    def dequeue(self, job: Job) -> bool:
        """Take ``job`` out of the queue; ``False`` if it was not waiting."""
        try:
            self.pending.remove(job)
        except ValueError:
            return False
        self.limited_pending -= job.limit is not None
        return True

    def assign(self, worker: Worker, job: Job) -> None:
        """``worker`` runs ``job`` from now on."""
        worker.job = job
        job.worker = worker
        self.running[id(job.entry)] += 1

    def release(self, job: Job) -> None:
        """``job`` no longer runs on its worker."""
        job.worker = None
        key = id(job.entry)
        self.running[key] -= 1
        if not self.running[key]:
            del self.running[key]

    def next_job(self) -> Job | None:
        """Take the oldest waiting job allowed to run, if any."""
        for index, job in enumerate(self.pending):
            if self.allowed(job):
                del self.pending[index]
                self.limited_pending -= job.limit is not None
                return job
        return None

    def eligible(self) -> int:
        """How many waiting jobs could run if there were workers for them."""
        if not self.limited_pending:
            return len(self.pending)
        running = collections.Counter(self.running)
        count = 0
        for job in self.pending:
            if job.limit is None or running[id(job.entry)] < job.limit:
                running[id(job.entry)] += 1
                count += 1
        return count

    def plan_spawns(self, now: float, *, watcher: bool = False) -> list[Worker]:
        """Decide which workers to start for the jobs waiting; return them (new, starting).

        Anyone may start workers up to the eager count; only the watcher, right after it read
        what the workers sent, judges that the busy ones are stuck (no attempt finished for
        ``SPAWN_DELAY``): a caller submitting a burst, or a watcher that was waiting for the
        GIL, would see no finish only because nobody looked.
        """
        if not self.pending or len(self.starting) >= MAX_STARTING:
            return []
        need = self.eligible() - len(self.starting)
        total = len(self.alive) + len(self.starting)
        room = need if self.max_workers is None else min(need, self.max_workers - total)
        room = min(room, MAX_STARTING - len(self.starting))
        if room <= 0:
            return []
        stuck = (
            watcher
            and not self.starting
            and now - self.pending[0].enqueued >= SPAWN_DELAY
            and now - self.last_finish >= SPAWN_DELAY
        )
        count = room if stuck else min(room, self.eager - total)
        workers = [self._new_worker() for _ in range(max(count, 0))]
        for worker in workers:
            self.starting[worker.token] = worker
        return workers

    def next_deadline(self, now: float, idle_timeout: float) -> float | None:
        """Seconds until the schedule needs looking at again (``None``: not by itself)."""
        deadlines = [w.kill_at for w in self.alive.values() if w.kill_at is not None]
        if self.idle:
            deadlines.append(min(w.idle_since for w in self.idle) + idle_timeout)
        if self.pending:  # once past, the watcher has planned spawns for it: no busy loop
            due = max(self.pending[0].enqueued, self.last_finish) + SPAWN_DELAY
            if due > now:
                deadlines.append(due)
        return max(0.0, min(deadlines) - now) if deadlines else None
