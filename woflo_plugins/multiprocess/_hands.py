"""The watch's dealings with one worker: handing it jobs, and what it sends back.

:class:`Hands` is the base of :class:`._pool.Pool` (which owns the threads, the zygote and the
selector): it frames jobs for a worker (a small one with the jobs queued behind it in one
system call), reads the worker's messages, and keeps the schedule in step with what the worker
says it runs. The queued jobs' protocol (announced starts, cancels, jobs given back) is
:mod:`._inbox`'s, on the worker's side.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from woflo import remote
from woflo_plugins.multiprocess import _endings, _wire, _world
from woflo_plugins.multiprocess._link import killpg
from woflo_plugins.multiprocess._relay import Relay
from woflo_plugins.multiprocess._schedule import Job, Schedule, Worker

EARLY_SEND = 64 * 1024  # bytes of a job sent before the previous result is delivered


class Hands:
    """Jobs to workers, and their messages back (from the watch, but :meth:`start_job`)."""

    _lock: threading.Lock
    _schedule: Schedule
    _relay: Relay
    _selector: Any
    _refill: dict[Worker, None]  # busy workers to queue jobs on, after the turn's reading
    kill_grace: float
    max_runs_per_worker: int | None

    def start_job(self, worker: Worker, job: Job, *, watcher: bool = False) -> None:
        """Hand ``job`` to ``worker``, from the caller's thread or (``watcher``) the watch, whose
        report of the start is delivered after its turn."""
        if worker.job is not job or worker.eof:
            return  # its worker died meanwhile, and the job ended with it
        if job.run is not None:
            if watcher:
                self._relay.add(job.call.run_id, _endings.started, job, worker.pid)
            else:
                job.run.report_started(job.call, pid=worker.pid)
        try:
            worker.conn.send_bytes(self._frame(worker, job))
        except OSError:
            pass  # the worker died; its exit report ends the attempt

    @staticmethod
    def _frame(worker: Worker, job: Job, queued: bool = False) -> bytes:
        """The frame handing ``job`` to ``worker`` (``queued``: behind its current job)."""
        entry = job.entry
        task_blob = b"" if entry.token in worker.known else entry.blob
        worker.known.add(entry.token)
        meta = (
            job.call.run_id,
            job.call.attempt,
            job.call.task_name,
            _world.for_worker(worker, job.world),
            dict(job.call.context) or None,  # (what plugins send along: woflo_attempt_context)
        )
        return _wire.pack_job(entry.token, meta, task_blob, job.args_blob, job.seq, queued)

    def _send(self, worker: Worker, first: Job | None, queued: list[Job]) -> None:
        """From the watch: hand ``worker`` the small job ``first`` (reporting its start) and
        queue ``queued`` behind it, in one system call."""
        frames = []  # (framed in the order sent: a frame has what the ones before did not)
        if first is not None:
            if first.run is not None:
                self._relay.add(first.call.run_id, _endings.started, first, worker.pid)
            frames.append(self._frame(worker, first))
        frames += [self._frame(worker, job, True) for job in queued]
        if frames:
            try:
                worker.conn.send_many(frames)
            except OSError:
                pass  # the worker died; its exit report ends (or re-queues) its jobs

    def unwatch(self, worker: Worker) -> None:
        """Stop reading ``worker`` (end of file, or about to close its socket)."""
        if not worker.eof:
            worker.eof = True
            try:
                self._selector.unregister(worker.conn)
            except (KeyError, ValueError, OSError):
                pass

    def read_worker(self, worker: Worker) -> None:
        try:
            kind, duration, seq, blob = _wire.unpack_reply(worker.conn.recv_bytes())
            if kind == b"s" or kind == b"k":
                self._queued_news(worker, kind, seq)
                return
            if kind == b"l":  # (a record that does not unpickle is a broken worker; a
                record = remote.loads(blob)  # handler that raises is the caller's, on stderr)
                job = worker.job
                key = job.call.run_id if job is not None else record.get("run_id")
                self._relay.add(key, _endings.emit_log, record)
                return
        except (EOFError, OSError):
            self.unwatch(worker)  # its exit report from the zygote follows
            return
        except BaseException as exc:  # a frame that does not unpickle: treat as a crash
            self.unwatch(worker)
            killpg(worker.pid, signal.SIGKILL)
            _endings.internal_error(exc, "unreadable message from a worker; the worker is killed")
            return
        self._finish(worker, kind, duration, seq, blob)

    def _finish(
        self, worker: Worker, kind: bytes, duration: float, seq: int, blob: memoryview
    ) -> None:
        """A result: report it; the worker's next job is the queued one it announced
        (``seq``), else one from the queue, and short jobs are queued behind it."""
        job = worker.job
        if job is None:
            return
        if job.killed:  # its report waits for the worker's exit; the queued jobs go back
            # to the queue then, the one this result may announce too: it may have begun in
            # the moment before the signal landed (the attempt ended as it was killed), and
            # it runs again elsewhere rather than end crashed for another run's stop
            return
        outcome = _endings.from_reply(job, kind, duration, blob)
        del blob
        job.entry.took(duration)
        now = time.monotonic()
        schedule = self._schedule
        with self._lock:
            worker.job = None
            schedule.release(job)
            schedule.last_finish = now
            following = promoted = None
            handed = []
            worker.runs += 1
            retiring = kind.isupper() or (  # it could not undo what the task changed
                self.max_runs_per_worker is not None and worker.runs >= self.max_runs_per_worker
            )
            if retiring:
                schedule.take_back(worker)  # it starts none of them
                handed = schedule.dispatch()
                if worker.kill_at is None:
                    worker.kill_at = now + 3600.0  # never reused; it exits by itself
            elif seq:
                promoted = schedule.promote(worker, seq)
            elif self._free(worker):
                following = schedule.next_for(worker, now)
            # A small next job goes out first, so the worker starts on it while this result
            # is delivered (its frame fits in the socket buffer: the send cannot block), with
            # short jobs queued behind it. A large one is sent after the delivery, as a piece
            # of its own: its send can block (a worker slow to read, or stopped), and this
            # result, already here, must not wait for that; nor does the watch, which a
            # standby takes over from a send that takes long.
            early = following is None or following.frame_size() <= EARLY_SEND
            queue: list[Job] = []
            if following is not None and early:  # queued behind it in the same send
                queue = schedule.to_queue(worker, max_runs=self.max_runs_per_worker)
            elif early:  # its next queued job runs: queue more after the turn's reading
                self._refill[worker] = None
        if retiring and not kind.isupper():  # retired by the pool: end of file, and it exits
            self.unwatch(worker)
            worker.conn.close()
        for other, pending in handed:
            self.hand(other, pending)
        if seq and promoted is None and not retiring:
            self._broken(worker, f"announced job {seq}, which it was not sent")
        if promoted is not None:
            self._started(worker, promoted)
        if following is not None and early:
            self._send(worker, following, queue)
        self._relay.add(job.call.run_id, _endings.report, job, outcome)
        if following is not None and not early:
            self.hand(worker, following)

    def top_up(self) -> None:
        """After a turn's reading: queue short jobs on the busy workers it heard from, each
        worker's in one system call."""
        refill, self._refill = self._refill, {}
        sends = []
        with self._lock:
            for worker in refill:
                if worker.job is not None or worker.queued:
                    queue = self._schedule.to_queue(worker, max_runs=self.max_runs_per_worker)
                    if queue:
                        sends.append((worker, queue))
        for worker, queue in sends:
            self._send(worker, None, queue)

    def _queued_news(self, worker: Worker, kind: bytes, seq: int) -> None:
        """A queued job starts now (``b"s"``), or was cancelled in time (``b"k"``)."""
        with self._lock:
            schedule = self._schedule
            job = (schedule.promote if kind == b"s" else schedule.skipped)(worker, seq)
            following = None
            handed = schedule.dispatch() if job is not None and kind == b"k" else []
            if job is not None and kind == b"s":
                self._refill[worker] = None
            elif job is not None and self._free(worker):  # it has nothing to do now
                following = schedule.next_for(worker, time.monotonic())
        for other, pending in handed:
            self.hand(other, pending)
        if job is None:
            self._broken(worker, f"sent {kind!r} for job {seq}, not one queued there")
        elif kind == b"s":
            self._started(worker, job)
        elif following is not None:
            self.hand(worker, following)

    @staticmethod
    def _free(worker: Worker) -> bool:
        """Whether ``worker`` has no job, none queued, and may take one."""
        return (
            worker.job is None and not worker.queued and worker.kill_at is None and not worker.eof
        )

    def _started(self, worker: Worker, job: Job) -> None:
        """``worker`` runs ``job``, queued on it until now: report its start, or, stopped
        meanwhile (its run has ended: the cancel came too late), kill it."""
        if not job.killed:
            self._relay.add(job.call.run_id, _endings.started, job, worker.pid)
            return
        with self._lock:
            if worker.kill_at is None:
                worker.kill_at = time.monotonic() + self.kill_grace
        self.terminate(worker)

    @staticmethod
    def terminate(worker: Worker) -> None:
        """SIGTERM to ``worker``'s process group (the SIGKILL after the grace is the watch's).

        A stopped worker (SIGSTOP, Ctrl-Z of its group) acts on the SIGTERM only once
        continued; the SIGKILL after the grace would not come while the watcher is blocked
        handing that worker a large job: so SIGCONT too."""
        killpg(worker.pid, signal.SIGTERM)
        killpg(worker.pid, signal.SIGCONT)

    def _broken(self, worker: Worker, what: str) -> None:
        """A worker that broke the protocol is killed; its exit report ends its jobs."""
        self.unwatch(worker)
        killpg(worker.pid, signal.SIGKILL)
        _endings.internal_error(RuntimeError(what), "a worker broke the protocol; it is killed")

    def hand(self, worker: Worker, job: Job) -> None:
        """Hand ``job`` to ``worker`` from the watch: now if small, else as a piece of its
        run's (a large send can block, and a standby takes over the watch from it)."""
        if job.frame_size() <= EARLY_SEND:
            self.start_job(worker, job, watcher=True)
        else:
            self._relay.add(job.call.run_id, self.start_job, worker, job)
