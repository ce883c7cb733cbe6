"""The caller's side of the multiprocess runner: one pool of warm workers per process.

Data flow::

    caller thread                  the watch (one thread at a time)     zygote      workers
    -------------                  --------------------------------     ------      -------
    submit(job) --idle worker--> send job ----------------------------------------> execute
        \\--none idle--> pending ->  spawn request  --- fd over ctl --->  fork -----> (new)
                                   <-- "P" token pid ---------------------/
                                   assign pending job, send ---------------------> execute
                                   <-- log records, result ----------------------------/
                                   after the turn: run.report_finished(), log records
    stop() -> killpg(SIGTERM) ...  grace, then killpg(SIGKILL)
                                   <-- "X" pid exitcode (the zygote reaped it) --/

One thread multiplexes every worker with one ``selectors`` selector, in turns; what a turn
finds is delivered to the runs (the caller's hooks and handlers run) after it, and a standby
takes over the watch from a delivery that takes long (:mod:`._relay`). Which job goes where
and when workers start is :mod:`._schedule`'s (plain data under the pool's lock); this module
does the I/O it decides. Idle workers retire after ``idle_timeout`` seconds.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import threading
import time
from typing import Any

from woflo import Outcome, TaskCall
from woflo.errors import PoolBroken, TaskStopped
from woflo_plugins.multiprocess import _endings, _wire
from woflo_plugins.multiprocess._channel import Channel
from woflo_plugins.multiprocess._hands import Hands
from woflo_plugins.multiprocess._link import ZygoteLink, adopt, drain, killpg
from woflo_plugins.multiprocess._relay import Relay
from woflo_plugins.multiprocess._schedule import Job, Schedule, TaskEntry, Worker

__all__ = ["Pool", "PoolBroken"]

_LONGEST_WAIT = 86400.0  # the watcher looks around at least daily (an inf deadline is none)


class Pool(Hands):
    """Warm worker processes forked by a zygote, watched by one thread."""

    def __init__(
        self,
        *,
        max_workers: int | None,
        idle_timeout: float,
        kill_grace: float,
        max_runs_per_worker: int | None = None,
        prefetch: int = 0,
    ):
        self.idle_timeout = idle_timeout
        self.kill_grace = kill_grace
        self.max_runs_per_worker = max_runs_per_worker
        self._lock = threading.Lock()
        self._spawn_queue: list[tuple[bytes, socket.socket]] = []
        self._schedule = Schedule(self._new_worker, max_workers=max_workers, prefetch=prefetch)
        self._refill: dict[Worker, None] = {}
        self._cancels: list[tuple[Worker, int]] = []  # queued jobs stopped: the watcher says so
        self._look_again = False  # (the workers look stuck: read them once more before judging)
        self._schedule.last_finish = time.monotonic()
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._selector = selectors.DefaultSelector()  # the watcher's: registered once each
        self._zygote: ZygoteLink | None = None
        self._relay = Relay(self._turn, "woflo-multiprocess")
        self._relay.start()

    @property
    def max_workers(self) -> int | None:
        """Most worker processes at once (``None``: no cap)."""
        return self._schedule.max_workers

    @max_workers.setter
    def max_workers(self, value: int | None) -> None:
        with self._lock:
            self._schedule.max_workers = value
        self._wake()

    @property
    def prefetch(self) -> int:
        """Most jobs queued on a busy worker, to run after its current one (0: none)."""
        return self._schedule.prefetch

    @prefetch.setter
    def prefetch(self, value: int) -> None:
        self._schedule.prefetch = value

    @property
    def closed(self) -> bool:
        """Whether the pool is shut down (or broke): the next call needs a new one."""
        return self._closed

    # ---- called from any thread -------------------------------------------------------------

    def job(
        self, run: Any, call: TaskCall, entry: TaskEntry, args_blob: bytes, world: Any = None
    ) -> Job:
        """A job executing ``call`` for ``run`` in ``world`` (the caller's directory and
        environment, :func:`._world.capture`), to :meth:`submit` (and :meth:`kill`)."""
        limit = run.task.options.get("max_concurrency")
        return Job(run, call, entry, args_blob, limit, world)

    def submit(self, job: Job) -> None:
        """Execute ``job`` in a worker, now or as soon as one is free. Handing a large job to
        a worker may block; :meth:`kill` of the job ends that."""
        schedule = self._schedule
        with self._lock:
            if self._closed:
                raise PoolBroken("the multiprocess pool is shut down")
            worker = schedule.idle.pop() if schedule.idle and schedule.allowed(job) else None
            if worker is None:
                # the first job to wait gives the watcher a new deadline: it must hear of it
                wake = not schedule.pending
                schedule.enqueue(job, time.monotonic())
                wake = bool(schedule.plan_spawns(job.enqueued)) or wake
            else:
                schedule.assign(worker, job)
        if worker is None:
            if wake:
                self._wake()
        else:
            self.start_job(worker, job)

    def kill(self, job: Job, call: TaskCall) -> None:
        """Stop ``call``: drop it if pending, else kill its worker's process group.

        Either way the attempt is then reported ended with :class:`TaskStopped` (the core turns
        that into :class:`TaskTimeout` when it asked for the kill because of a deadline).
        """
        if job.call is not call:
            return
        with self._lock:
            worker = job.worker
            if worker is None:
                if not self._schedule.dequeue(job):
                    return
                pending = True
            elif job in worker.queued:  # not started: the worker is told not to
                if job.killed:
                    return
                job.killed = pending = True
                self._cancels.append((worker, job.seq))
            else:
                pending = False
                job.killed = True
                if worker.kill_at is None:
                    worker.kill_at = time.monotonic() + self.kill_grace
        if pending:
            _endings.report(job, Outcome(error=_endings.stopped(job)))
            if worker is not None:
                self._wake()
            return
        assert worker is not None
        self.terminate(worker)
        self._wake()

    def snapshot(self) -> tuple[int | None, list[tuple[int, Any, Any]], dict[str, int]]:
        """The zygote's pid; ``(pid, run_id, attempt)`` of every live worker (``None``s when
        idle); how many workers are idle, busy and starting, and how many jobs wait."""
        schedule = self._schedule
        with self._lock:
            workers = [
                (pid, w.job.call.run_id, w.job.call.attempt) if w.job else (pid, None, None)
                for pid, w in schedule.alive.items()
            ]
            counts = {"idle": len(schedule.idle), "starting": len(schedule.starting)}
            pending = len(schedule.pending) + schedule.queued_count()
            counts |= {"busy": sum(1 for w in workers if w[1]), "pending": pending}
        return (self._zygote.pid if self._zygote else None), workers, counts

    def warm(self) -> None:
        """Start one worker now, before any job (when none is alive or starting): the first
        call then finds it ready. It retires after ``idle_timeout`` like any idle worker."""
        with self._lock:
            started = not self._closed and self._schedule.spare() is not None
        if started:
            self._wake()

    def close(self) -> None:
        """Stop the workers and the zygote; jobs still pending or running end stopped."""
        with self._lock:
            self._closed = True
        self._wake()
        if not self._relay.is_ours():
            self._relay.join(timeout=10)

    def _new_worker(self) -> Worker:
        """A worker to start: its socket pair, one end queued for the zygote (under the lock)."""
        token = os.urandom(8)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._spawn_queue.append((token, theirs))
        return Worker(token, Channel(ours))

    # ---- the watcher thread -----------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _turn(self) -> bool:
        """One round of the watch (the relay's): ``False`` once it is over and every run the
        pool held has its ending queued."""
        try:
            error = self._serve()
        except BaseException as exc:  # a dead watcher must never mean a silent hang
            error = PoolBroken(f"the multiprocess pool's watcher thread failed: {exc!r}")
            error.__cause__ = exc
            _endings.internal_error(exc, "the pool's watcher thread failed; its runs fail")
        if error is None:
            return True
        self._break(error)
        return False

    def _serve(self) -> BaseException | None:
        """Wait for the next event (or deadline) and handle it: ``None`` to go on, else the
        error to end every run with."""
        zygote = self._zygote
        if zygote is None:  # the first turn
            try:
                zygote = self._zygote = adopt()
            except Exception as exc:
                return PoolBroken(f"could not start the worker pool: {exc}")
            self._selector.register(self._wake_r, selectors.EVENT_READ, None)
            self._selector.register(zygote.socket, selectors.EVENT_READ, zygote)
        self._on_time(time.monotonic())  # (the last turn's deadlines: after its deliveries)
        with self._lock:
            if self._closed:
                return TaskStopped("the multiprocess pool was shut down")
            now = time.monotonic()
            if self._schedule.pending:  # at every turn: no spawn deadline passes unchecked
                self._schedule.plan_spawns(now)
            timeout = (
                0.0 if self._look_again else self._schedule.next_deadline(now, self.idle_timeout)
            )
            spawns, self._spawn_queue = self._spawn_queue, []
            cancels, self._cancels = self._cancels, []
        for worker, seq in cancels:  # (sent after the job: its frame went in an earlier turn)
            if not worker.eof:
                try:
                    worker.conn.send_bytes(_wire.CANCEL.pack(seq))
                except OSError:
                    pass
        if timeout is not None and not timeout < _LONGEST_WAIT:  # inf: no deadline at all
            timeout = _LONGEST_WAIT
        try:
            for token, theirs in spawns:
                zygote.spawn(token, theirs)
        finally:
            for _token, theirs in spawns:
                theirs.close()  # sent (or never to be): ours alone hold the worker's end
        for key, _events in self._selector.select(timeout):
            if key.data is None:
                drain(self._wake_r)
            elif key.data is zygote:
                if not self._read_zygote(zygote):
                    return PoolBroken("the worker pool's zygote process died")
            else:  # a worker: and the messages read with it, which a selector cannot see
                while not key.data.eof:
                    self.read_worker(key.data)
                    if not key.data.conn.has_message():
                        break
        if self._refill:
            self.top_up()
        return None

    def _read_zygote(self, zygote: ZygoteLink) -> bool:
        report = zygote.read()
        if report is None:
            return False
        kind, token, value = report
        if kind == b"P":
            with self._lock:
                worker = self._schedule.starting.pop(token, None)
                if worker is None:
                    return True
                worker.pid = value
                self._schedule.last_finish = time.monotonic()  # progress: a worker came up
                self._schedule.alive[value] = worker
                self._selector.register(worker.conn, selectors.EVENT_READ, worker)
                job = self._schedule.next_for(worker, time.monotonic())
            if job is not None:
                self.hand(worker, job)
        else:
            self._worker_exited(int.from_bytes(token, "little"), value)
        return True

    def _worker_exited(self, pid: int, exitcode: int) -> None:
        worker = self._schedule.alive.get(pid)
        if worker is None:
            return
        # Everything the worker wrote before it died is still in the socket: read it first.
        while not worker.eof and (worker.job is not None or worker.queued):
            try:
                if not worker.conn.poll(0):
                    break
            except OSError:
                break
            self.read_worker(worker)
        with self._lock:
            self._schedule.alive.pop(pid, None)
            if worker in self._schedule.idle:
                self._schedule.idle.remove(worker)
            job = worker.job
            worker.job = None
            if job is not None:
                self._schedule.release(job)
            self._schedule.take_back(worker)  # never started: they go to another worker
            handed = self._schedule.dispatch()
            self._schedule.plan_spawns(time.monotonic())
        self.unwatch(worker)
        worker.conn.close()
        for other, pending in handed:
            self.hand(other, pending)
        if job is None:
            return
        error = _endings.stopped(job) if job.killed else _endings.crashed(job, pid, exitcode)
        self._relay.add(job.call.run_id, _endings.report, job, Outcome(error=error))

    def _on_time(self, now: float) -> None:
        retire: list[Worker] = []
        escalate: list[Worker] = []
        schedule = self._schedule
        with self._lock:
            for worker in schedule.alive.values():
                if worker.kill_at is not None and worker.kill_at <= now:
                    worker.kill_at = now + 3600.0  # once
                    escalate.append(worker)
            for worker in list(schedule.idle):
                if worker.idle_since + self.idle_timeout <= now:
                    schedule.idle.remove(worker)
                    worker.kill_at = now + 3600.0  # never reused
                    retire.append(worker)
            if schedule.pending:
                # No finish read for SPAWN_DELAY may be the watcher's own pause (the garbage
                # collector, or the caller's thread holding the GIL), not stuck workers: their
                # results may be waiting in the sockets. So look once more, without waiting,
                # before starting workers beyond the eager count; under a steady load the pool
                # grew by four each time such a pause came.
                looks_stuck = schedule.looks_stuck(now)
                if looks_stuck and not self._look_again:
                    self._look_again = True
                else:
                    self._look_again = False
                    schedule.plan_spawns(now, watcher=looks_stuck)
            else:  # (the look found what they finished, or the waiting jobs were stopped)
                self._look_again = False
        for worker in escalate:
            killpg(worker.pid, signal.SIGKILL)
        for worker in retire:
            self.unwatch(worker)
            worker.conn.close()  # end of file: the worker exits on its own

    def _break(self, error: BaseException) -> None:
        """Fail everything: the zygote is gone (its workers die with it) or the pool closed."""
        with self._lock:
            self._closed = True
            schedule = self._schedule
            jobs = list(schedule.pending)
            schedule.pending.clear()
            schedule.limited_pending = 0
            workers = list(schedule.alive.values())
            schedule.alive.clear()
            schedule.idle.clear()
            starting = list(schedule.starting.values())
            schedule.starting.clear()
            for _token, theirs in self._spawn_queue:
                theirs.close()
            self._spawn_queue.clear()
        for worker in workers:
            killpg(worker.pid, signal.SIGKILL)
            if worker.job is not None:
                jobs.append(worker.job)
            jobs.extend(job for job in worker.queued if not job.killed)
            worker.conn.close()
        for worker in starting:
            worker.conn.close()
        self._selector.close()
        if self._zygote is not None:
            self._zygote.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        for job in jobs:
            self._relay.add(job.call.run_id, _endings.report, job, Outcome(error=error))
