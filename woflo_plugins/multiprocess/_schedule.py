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


PREFETCH_SHORT = 0.002
"""Seconds: only jobs of a task whose attempts take less (on average, lately) are queued on
a busy worker, and only behind such a job."""
PREFETCH_TIME = 0.005
"""Seconds of expected work queued on a busy worker at most (and ``prefetch`` jobs)."""
PREFETCH_BYTES = 64 * 1024
"""Bytes of job frames queued on a busy worker at most (the socket takes them at once)."""


class TaskEntry:
    """A task pickled once for the workers, with the token they know it by."""

    __slots__ = ("blob", "recent", "token")

    def __init__(self, token: bytes, blob: bytes):
        self.token = token
        self.blob = blob
        self.recent: float | None = None  # its attempts' recent duration (a moving average)

    def took(self, duration: float) -> None:
        """Note an attempt's duration."""
        recent = self.recent
        self.recent = duration if recent is None else 0.75 * recent + 0.25 * duration

    def short(self) -> bool:
        """Whether its attempts are short lately (its jobs may be queued on a busy worker)."""
        recent = self.recent
        return recent is not None and recent < PREFETCH_SHORT

    def ran_long(self) -> None:
        """An attempt ran long enough for the jobs queued behind it to be given back: queue
        nothing behind this task until its attempts are short again."""
        self.recent = PREFETCH_SHORT * 2


class Job:
    """One attempt to hand to a worker."""

    __slots__ = (
        "args_blob",
        "call",
        "enqueued",
        "entry",
        "killed",
        "limit",
        "queued_size",
        "queued_work",
        "run",
        "seq",
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
        self.seq = 0  # set when sent queued: the number the worker announces it by
        self.queued_size = 0  # its frame's size and expected work as counted when queued
        self.queued_work = 0.0

    def frame_size(self, known: bool = False) -> int:
        """An upper bound of the size of the frame that hands this job to a worker (``known``:
        one that has the task already)."""
        task = 0 if known else len(self.entry.blob)
        return len(self.args_blob) + task + 4 * len(self.call.task_name) + 256


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
        "queued",
        "queued_bytes",
        "queued_work",
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
        self.job: Job | None = None  # the job it runs (or will run: sent while it was idle)
        self.queued: collections.deque[Job] = collections.deque()  # sent, not announced
        self.queued_bytes = 0  # their frames' sizes, and their expected work (seconds)
        self.queued_work = 0.0
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
        prefetch: int = 0,
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
        self.prefetch = prefetch
        self._seq = 0

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
        self._hold(worker, job)

    def _hold(self, worker: Worker, job: Job) -> None:
        """``job`` is ``worker``'s, to run now or once the jobs before it are done."""
        job.worker = worker
        self.running[id(job.entry)] += 1

    def next_for(self, worker: Worker, now: float) -> Job | None:
        """The job ``worker``, free now, runs next (assigned to it), or ``None``: it is idle."""
        job = self.next_job()
        if job is None:
            worker.idle_since = now
            self.idle.append(worker)
        else:
            self.assign(worker, job)
        return job

    def release(self, job: Job) -> None:
        """``job`` no longer runs on its worker."""
        job.worker = None
        key = id(job.entry)
        self.running[key] -= 1
        if not self.running[key]:
            del self.running[key]

    def take_back(self, worker: Worker) -> None:
        """Put the jobs queued on ``worker``, which will not start them (it died, or retires),
        back at the head of the queue in their order: they never ran. Cancelled ones (their
        runs ended when stopped) are dropped."""
        jobs = list(worker.queued)
        worker.queued.clear()
        worker.queued_bytes, worker.queued_work = 0, 0.0
        for job in reversed(jobs):
            self._put_back(job)

    def _put_back(self, job: Job) -> None:
        """A queued job that will not start where it was sent goes back to the head of the
        queue; a cancelled one (its run ended when stopped) is dropped."""
        self.release(job)
        if not job.killed:
            self.pending.appendleft(job)
            self.limited_pending += job.limit is not None

    def dispatch(self) -> list[tuple[Worker, Job]]:
        """Idle workers paired with jobs waiting that may run (jobs put back in the queue)."""
        pairs = []
        while self.idle and self.pending:
            job = self.next_job()
            if job is None:
                break
            worker = self.idle.pop()
            self.assign(worker, job)
            pairs.append((worker, job))
        return pairs

    def promote(self, worker: Worker, seq: int) -> Job | None:
        """The queued job ``worker`` announced it starts (``seq``) is its job now; ``None``
        if that is not the job at the head of its queue (a broken worker)."""
        if not worker.queued or worker.queued[0].seq != seq or worker.job is not None:
            return None
        job = worker.job = worker.queued.popleft()
        self._unqueue(worker, job)
        return job

    def skipped(self, worker: Worker, seq: int) -> Job | None:
        """A queued job ``worker`` will never start (cancelled, or given back because the job
        before it runs long), out of its queue: back at the head of the queue unless stopped."""
        for job in worker.queued:
            if job.seq == seq:
                worker.queued.remove(job)
                self._unqueue(worker, job)
                self._put_back(job)
                if not job.killed and worker.job is not None:  # given back: it runs long
                    worker.job.entry.ran_long()
                return job
        return None

    def to_queue(self, worker: Worker, *, max_runs: int | None) -> list[Job]:
        """Jobs to send ``worker``, busy with a short job, to run after it (prefetch): from the
        head of the queue, while they are short, small and not capped by ``max_concurrency``,
        up to :data:`PREFETCH_TIME` of expected work, :data:`PREFETCH_BYTES` and ``prefetch``
        jobs. ``worker`` must have a job; they are assigned to it, numbered, and queued."""
        if not self.pending or self.idle or worker.kill_at is not None or worker.eof:
            return []
        current = worker.queued[-1] if worker.queued else worker.job
        if current is None or not current.entry.short():
            return []
        room = self.prefetch - len(worker.queued)
        if max_runs is not None:
            room = min(room, max_runs - worker.runs - 1 - len(worker.queued))
        taken: list[Job] = []
        pending, known = self.pending, worker.known
        size, work = worker.queued_bytes, worker.queued_work
        while pending and len(taken) < room:
            job = pending[0]
            if job.limit is not None or not job.entry.short():
                break
            recent = job.entry.recent or 0.0  # (known: it is short)
            job.queued_size = job.frame_size(job.entry.token in known)
            if size + job.queued_size > PREFETCH_BYTES or (work + recent > PREFETCH_TIME and size):
                break
            size += job.queued_size
            work += recent
            job.queued_work = recent
            pending.popleft()
            self._hold(worker, job)
            self._seq += 1
            job.seq = self._seq
            worker.queued.append(job)
            taken.append(job)
        worker.queued_bytes, worker.queued_work = size, work
        return taken

    @staticmethod
    def _unqueue(worker: Worker, job: Job) -> None:
        """``job`` leaves ``worker``'s queue (the caller took it out)."""
        worker.queued_bytes -= job.queued_size
        worker.queued_work -= job.queued_work
        if not worker.queued:
            worker.queued_bytes, worker.queued_work = 0, 0.0

    def queued_count(self) -> int:
        """Jobs queued on busy workers, not started yet."""
        return sum(len(w.queued) for w in self.alive.values())

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

    def spare(self) -> Worker | None:
        """A worker to start while no job waits (the first, warming up), when none is alive
        or starting and the cap allows one; ``None`` otherwise."""
        if self.alive or self.starting or self.max_workers == 0:
            return None
        worker = self._new_worker()
        self.starting[worker.token] = worker
        return worker

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
        stuck = watcher and self.looks_stuck(now)
        count = room if stuck else min(room, self.eager - total)
        workers = [self._new_worker() for _ in range(max(count, 0))]
        for worker in workers:
            self.starting[worker.token] = worker
        return workers

    def looks_stuck(self, now: float) -> bool:
        """Whether jobs have waited, and no attempt finished, for ``SPAWN_DELAY`` (no worker
        starting meanwhile): the busy workers may be stuck, if the watcher was looking."""
        return (
            bool(self.pending)
            and not self.starting
            and now - self.pending[0].enqueued >= SPAWN_DELAY
            and now - self.last_finish >= SPAWN_DELAY
        )

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
