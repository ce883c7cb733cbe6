"""The caller's side of the multiprocess runner: one pool of warm workers per process.

Data flow::

    caller thread                  watcher thread (one)                 zygote      workers
    -------------                  --------------------                 ------      -------
    submit(job) --idle worker--> send job ----------------------------------------> execute
        \\--none idle--> pending ->  spawn request  --- fd over ctl --->  fork -----> (new)
                                   <-- "P" token pid ---------------------/
                                   assign pending job, send ---------------------> execute
                                   <-- log records, result ----------------------------/
                                   run._attempt_finished(), next pending job
    stop() -> killpg(SIGTERM) ...  grace, then killpg(SIGKILL)
                                   <-- "X" pid exitcode (the zygote reaped it) --/
                                   crash/stop/timeout outcome for its attempt

One thread multiplexes every worker with one ``selectors`` selector. A job goes to an
idle worker at once; otherwise it waits while a worker starts: immediately while fewer than
``os.cpu_count() + 2`` workers exist, and beyond that as soon as jobs have waited ``SPAWN_DELAY``
with no attempt finishing meanwhile (so a burst of tiny calls is served by warm workers, and
slow calls each get their own). Idle workers retire after ``idle_timeout`` seconds.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

from woflo import Outcome, TaskCall
from woflo.errors import TaskCrashed, TaskStopped, WofloError
from woflo_plugins.multiprocess import _serialize
from woflo_plugins.multiprocess._channel import Channel
from woflo_plugins.multiprocess._zygote import RECORD, SPAWN

SPAWN_DELAY = 0.05
MAX_STARTING = 4
EARLY_SEND = 64 * 1024  # bytes of a job sent before the previous result is delivered


class _Job:
    __slots__ = ("args_blob", "call", "enqueued", "entry", "killed", "limit", "run", "worker")

    def __init__(self, run: Any, call: TaskCall, entry: Any, args_blob: bytes, limit: int | None):
        self.run = run
        self.call = call
        self.entry = entry  # the task's _TaskEntry: one per Task, so id() counts per task
        self.args_blob = args_blob
        self.limit = limit
        self.worker: _Worker | None = None
        self.enqueued = 0.0
        self.killed = False


class _Worker:
    __slots__ = ("conn", "eof", "exitcode", "idle_since", "job", "kill_at", "known", "pid", "token")

    def __init__(self, token: bytes, conn: Channel):
        self.token = token
        self.conn = conn
        self.pid = 0
        self.job: _Job | None = None
        self.known: set[bytes] = set()
        self.idle_since = 0.0
        self.kill_at: float | None = None
        self.eof = False
        self.exitcode: int | None = None


class _TaskEntry:
    __slots__ = ("blob", "token")

    def __init__(self, token: bytes, blob: bytes):
        self.token = token
        self.blob = blob


class PoolBroken(WofloError):
    """The worker pool could not start its zygote process."""


class Pool:
    """Warm worker processes forked by a zygote, watched by one thread."""

    def __init__(self, *, max_workers: int | None, idle_timeout: float, kill_grace: float):
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self.kill_grace = kill_grace
        # a worker waiting for its next call while another is served keeps the cores busy:
        # bursts of short calls run faster on a few more workers than cores (measured: 2,000
        # no-ops on 2 cores, 134 us/call with 2 workers, 116 with 4)
        self._eager = (os.cpu_count() or 2) + 2
        self._lock = threading.Lock()
        self._pending: collections.deque[_Job] = collections.deque()
        self._idle: list[_Worker] = []
        self._starting: dict[bytes, _Worker] = {}
        self._alive: dict[int, _Worker] = {}
        self._running: collections.Counter[int] = collections.Counter()
        self._limited_pending = 0  # pending jobs with a max_concurrency: only they need a scan
        self._spawn_queue: list[tuple[bytes, socket.socket]] = []
        self._last_finish = time.monotonic()
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self._selector = selectors.DefaultSelector()  # the watcher's: registered once each
        self._ctl: socket.socket | None = None
        self._zygote: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._watch, name="woflo-multiprocess", daemon=True)
        self._thread.start()

    # ---- called from any thread -------------------------------------------------------------

    def submit(self, run: Any, call: TaskCall, entry: _TaskEntry, args_blob: bytes) -> None:
        """Execute ``call`` for ``run`` in a worker, now or as soon as one is free."""
        limit = run.task.options.get("max_concurrency")
        job = _Job(run, call, entry, args_blob, limit)
        run._mp_job = job
        with self._lock:
            if self._closed:
                raise WofloError("the multiprocess pool is shut down")
            worker = self._idle.pop() if self._idle and self._allowed(job) else None
            if worker is None:
                job.enqueued = time.monotonic()
                # the first job to wait gives the watcher a new deadline: it must hear of it
                wake = not self._pending
                self._pending.append(job)
                self._limited_pending += job.limit is not None
                wake = self._plan_spawns(job.enqueued) > 0 or wake
            else:
                self._assign(worker, job)
        if worker is None:
            if wake:
                self._wake()
            return
        self._start(worker, job)

    def kill(self, run: Any, call: TaskCall) -> None:
        """Stop ``call``: drop it if pending, else kill its worker's process group.

        Either way the attempt is then reported ended with :class:`TaskStopped` (the core turns
        that into :class:`TaskTimeout` when it asked for the kill because of a deadline).
        """
        job: _Job | None = getattr(run, "_mp_job", None)
        if job is None or job.call is not call:
            return
        with self._lock:
            if job.worker is None:
                try:
                    self._pending.remove(job)
                except ValueError:
                    return
                self._limited_pending -= job.limit is not None
                pending = True
            else:
                pending = False
                worker = job.worker
                job.killed = True
                if worker.kill_at is None:
                    worker.kill_at = time.monotonic() + self.kill_grace
        if pending:
            _ended(job)
            run._attempt_finished(call, Outcome(error=_stopped(job)))
            return
        _killpg(worker.pid, signal.SIGTERM)
        # A stopped worker (SIGSTOP, Ctrl-Z of its group) acts on the SIGTERM only once
        # continued; the SIGKILL after the grace would not come while the watcher is blocked
        # handing that worker a large job.
        _killpg(worker.pid, signal.SIGCONT)
        self._wake()

    def counts(self) -> dict[str, int]:
        """How many workers are idle, busy and starting, and how many jobs wait."""
        with self._lock:
            busy = sum(1 for w in self._alive.values() if w.job is not None)
            return {
                "idle": len(self._idle),
                "busy": busy,
                "starting": len(self._starting),
                "pending": len(self._pending),
            }

    def close(self) -> None:
        """Stop the workers and the zygote; jobs still pending or running crash."""
        with self._lock:
            self._closed = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    # ---- scheduling (under the lock) ------------------------------------------------------

    def _allowed(self, job: _Job) -> bool:
        return job.limit is None or self._running[id(job.entry)] < job.limit

    def _assign(self, worker: _Worker, job: _Job) -> None:
        worker.job = job
        job.worker = worker
        self._running[id(job.entry)] += 1

    def _release(self, job: _Job) -> None:
        job.worker = None
        key = id(job.entry)
        self._running[key] -= 1
        if not self._running[key]:
            del self._running[key]

    def _next_job(self) -> _Job | None:
        for index, job in enumerate(self._pending):
            if self._allowed(job):
                del self._pending[index]
                self._limited_pending -= job.limit is not None
                return job
        return None

    def _eligible(self) -> int:
        if not self._limited_pending:
            return len(self._pending)
        running = collections.Counter(self._running)
        count = 0
        for job in self._pending:
            if job.limit is None or running[id(job.entry)] < job.limit:
                running[id(job.entry)] += 1
                count += 1
        return count

    def _plan_spawns(self, now: float, *, watcher: bool = False) -> int:
        """Queue worker starts for jobs waiting; return how many were queued.

        Anyone may start workers up to ``os.cpu_count() + 2``; only the watcher, right after it
        read what the workers sent, judges that the busy ones are stuck (no attempt finished
        for ``SPAWN_DELAY``): a caller submitting a burst, or a watcher that was waiting for
        the GIL, would see no finish only because nobody looked.
        """
        if not self._pending or len(self._starting) >= MAX_STARTING:
            return 0
        need = self._eligible() - len(self._starting)
        total = len(self._alive) + len(self._starting)
        room = need if self.max_workers is None else min(need, self.max_workers - total)
        room = min(room, MAX_STARTING - len(self._starting))
        if room <= 0:
            return 0
        stuck = (
            watcher
            and not self._starting
            and now - self._pending[0].enqueued >= SPAWN_DELAY
            and now - self._last_finish >= SPAWN_DELAY
        )
        count = room if stuck else min(room, self._eager - total)
        for _ in range(max(count, 0)):
            token = os.urandom(8)
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self._starting[token] = _Worker(token, Channel(ours))
            self._spawn_queue.append((token, theirs))
        return max(count, 0)

    def _next_deadline(self, now: float) -> float | None:
        deadlines = [w.kill_at for w in self._alive.values() if w.kill_at is not None]
        if self._idle:
            deadlines.append(min(w.idle_since for w in self._idle) + self.idle_timeout)
        if self._pending:  # once past, the loop has planned spawns for it: no busy loop
            due = max(self._pending[0].enqueued, self._last_finish) + SPAWN_DELAY
            if due > now:
                deadlines.append(due)
        return max(0.0, min(deadlines) - now) if deadlines else None

    # ---- the watcher thread -----------------------------------------------------------------

    def _start(self, worker: _Worker, job: _Job) -> None:
        job.run._attempt_started(job.call)
        entry = job.entry
        task_blob = b"" if entry.token in worker.known else entry.blob
        worker.known.add(entry.token)
        meta = (job.call.run_id, job.call.attempt, job.call.task_name)
        try:
            worker.conn.send_bytes(_serialize.pack_job(entry.token, meta, task_blob, job.args_blob))
        except OSError:
            pass  # the worker died; its exit report ends the attempt

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def _watch(self) -> None:
        try:
            self._start_zygote()
        except Exception as exc:
            self._break(PoolBroken(f"could not start the worker pool: {exc}"))
            return
        assert self._ctl is not None
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._selector.register(self._ctl, selectors.EVENT_READ, self._ctl)
        while True:
            with self._lock:
                if self._closed:
                    break
                now = time.monotonic()
                if self._pending:  # at every turn, so no spawn deadline passes unchecked
                    self._plan_spawns(now)
                spawns, self._spawn_queue = self._spawn_queue, []
                timeout = self._next_deadline(now)
            for token, theirs in spawns:
                try:
                    socket.send_fds(self._ctl, [SPAWN.pack(b"S", token)], [theirs.fileno()])
                finally:
                    theirs.close()
            for key, _events in self._selector.select(timeout):
                if key.data is None:
                    _drain(self._wake_r)
                elif key.data is self._ctl:
                    if not self._read_zygote():
                        self._break(PoolBroken("the worker pool's zygote process died"))
                        return
                elif not key.data.eof:
                    self._read_worker(key.data)
            self._on_time(time.monotonic())
        self._break(TaskStopped("the multiprocess pool was shut down"))

    def _start_zygote(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        code = "from woflo_plugins.multiprocess._zygote import main; main()"
        flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
        self._zygote = subprocess.Popen(
            [sys.executable, *flags, "-c", code, str(theirs.fileno()), str(os.getpid())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # out of the terminal's process group: Ctrl-C is ours
        )
        theirs.close()
        from woflo._plugins import get_plugin_system

        init = {
            "plugins": get_plugin_system().manifest(),
            "sys_path": list(sys.path),
            "log_level": logging.getLogger().getEffectiveLevel(),
            "preload": [m for m in ("structlog",) if m in sys.modules],
        }
        blob = pickle.dumps(init)
        ours.sendall(struct.pack("=q", len(blob)) + blob)
        self._ctl = ours

    def _read_zygote(self) -> bool:
        assert self._ctl is not None
        data = b""
        while len(data) < RECORD.size:
            try:
                chunk = self._ctl.recv(RECORD.size - len(data))
            except OSError:
                chunk = b""
            if not chunk:
                return False
            data += chunk
        kind, token, value = RECORD.unpack(data)
        if kind == b"P":
            with self._lock:
                worker = self._starting.pop(token, None)
                if worker is None:
                    return True
                worker.pid = value
                self._last_finish = time.monotonic()  # progress: a worker came up
                self._alive[value] = worker
                self._selector.register(worker.conn, selectors.EVENT_READ, worker)
                job = self._next_job()
                if job is None:
                    worker.idle_since = time.monotonic()
                    self._idle.append(worker)
                else:
                    self._assign(worker, job)
            if job is not None:
                self._start(worker, job)
        else:
            self._worker_exited(int.from_bytes(token, "little"), value)
        return True

    def _unwatch(self, worker: _Worker) -> None:
        """Stop reading ``worker`` (end of file, or about to close its socket)."""
        if not worker.eof:
            worker.eof = True
            try:
                self._selector.unregister(worker.conn)
            except (KeyError, ValueError, OSError):
                pass

    def _read_worker(self, worker: _Worker) -> None:
        try:
            kind, duration, blob = _serialize.unpack_reply(worker.conn.recv_bytes())
            if kind == b"l":
                _emit_log(_serialize.loads(blob))
                return
        except (EOFError, OSError):
            self._unwatch(worker)  # its exit report from the zygote follows
            return
        except BaseException as exc:  # a frame that does not unpickle: treat as a crash
            self._unwatch(worker)
            _killpg(worker.pid, signal.SIGKILL)
            _report_internal(exc)
            return
        self._finish(worker, kind, duration, blob)

    def _finish(self, worker: _Worker, kind: bytes, duration: float, blob: memoryview) -> None:
        job = worker.job
        if job is None:
            return
        if job.killed:  # its report waits for the zygote's word that the worker is dead
            return
        if kind == b"o":
            try:
                outcome = Outcome(value=_serialize.loads(blob), duration=duration)
            except BaseException as exc:
                exc.add_note(
                    f"(raised while unpickling the result of task {job.call.task_name!r} "
                    "in the calling process)"
                )
                outcome = Outcome(error=exc, duration=duration)
        else:
            try:
                error = _serialize.load_exception(blob)
            except BaseException as exc:
                error = exc
            outcome = Outcome(error=error, duration=duration)
        del blob
        now = time.monotonic()
        with self._lock:
            worker.job = None
            self._release(job)
            self._last_finish = now
            following = None
            if worker.kill_at is None and not worker.eof:
                following = self._next_job()
                if following is None:
                    worker.idle_since = now
                    self._idle.append(worker)
                else:
                    self._assign(worker, following)
        _ended(job)
        # A small next job goes out first, so the worker starts on it while this result is
        # delivered (its frame fits in the socket buffer, empty now: the send cannot block). A
        # large one only after: its send can block (a worker slow to read, or stopped), and
        # this result, already here, must not wait for that.
        early = following is not None and _frame_size(following) <= EARLY_SEND
        if following is not None and early:
            self._start(worker, following)
        try:
            job.run._attempt_finished(job.call, outcome)
        finally:
            if following is not None and not early:
                self._start(worker, following)

    def _worker_exited(self, pid: int, exitcode: int) -> None:
        worker = self._alive.get(pid)
        if worker is None:
            return
        # Everything the worker wrote before it died is still in the socket: read it first.
        while not worker.eof and worker.job is not None:
            try:
                if not worker.conn.poll(0):
                    break
            except OSError:
                break
            self._read_worker(worker)
        with self._lock:
            self._alive.pop(pid, None)
            if worker in self._idle:
                self._idle.remove(worker)
            job = worker.job
            worker.job = None
            if job is not None:
                self._release(job)
            self._plan_spawns(time.monotonic())
        self._unwatch(worker)
        worker.conn.close()
        if job is None:
            return
        _ended(job)
        if job.killed:
            error: BaseException = _stopped(job)
        else:
            how = (
                f"was killed by signal {_signal_name(-exitcode)}"
                if exitcode < 0
                else f"exited with code {exitcode}"
            )
            error = TaskCrashed(
                f"the worker process (pid {pid}) running task {job.call.task_name!r} "
                f"(run {job.call.run_id}, attempt {job.call.attempt}) {how}",
                pid=pid,
                exitcode=exitcode,
            )
        job.run._attempt_finished(job.call, Outcome(error=error))

    def _on_time(self, now: float) -> None:
        retire: list[_Worker] = []
        escalate: list[_Worker] = []
        with self._lock:
            for worker in self._alive.values():
                if worker.kill_at is not None and worker.kill_at <= now:
                    worker.kill_at = now + 3600.0  # once
                    escalate.append(worker)
            for worker in list(self._idle):
                if worker.idle_since + self.idle_timeout <= now:
                    self._idle.remove(worker)
                    worker.kill_at = now + 3600.0  # never reused
                    retire.append(worker)
            if self._pending:
                self._plan_spawns(now, watcher=True)
        for worker in escalate:
            _killpg(worker.pid, signal.SIGKILL)
        for worker in retire:
            self._unwatch(worker)
            worker.conn.close()  # end of file: the worker exits on its own

    def _break(self, error: BaseException) -> None:
        """Fail everything: the zygote is gone (its workers die with it) or the pool closed."""
        with self._lock:
            self._closed = True
            jobs = list(self._pending)
            self._pending.clear()
            self._limited_pending = 0
            workers = list(self._alive.values())
            self._alive.clear()
            self._idle.clear()
            starting = list(self._starting.values())
            self._starting.clear()
            for _token, theirs in self._spawn_queue:
                theirs.close()
            self._spawn_queue.clear()
        for worker in workers:
            _killpg(worker.pid, signal.SIGKILL)
            if worker.job is not None:
                jobs.append(worker.job)
            worker.conn.close()
        for worker in starting:
            worker.conn.close()
        self._selector.close()
        if self._ctl is not None:
            self._ctl.close()
        if self._zygote is not None:
            try:
                self._zygote.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait()
        os.close(self._wake_r)
        os.close(self._wake_w)
        for job in jobs:
            _ended(job)
            job.run._attempt_finished(job.call, Outcome(error=error))


def _frame_size(job: _Job) -> int:
    """An upper bound of the size of the frame that hands ``job`` to a worker."""
    return len(job.args_blob) + len(job.entry.blob) + 4 * len(job.call.task_name) + 256


def _ended(job: _Job) -> None:
    """The attempt is over: its run no longer needs the job. The job refers to the run, and
    so to its arguments and their pickle; without this, that reference cycle keeps them (a
    100 MB argument, twice) alive after the caller dropped the run, until the gc runs."""
    if getattr(job.run, "_mp_job", None) is job:
        job.run._mp_job = None


def _stopped(job: _Job) -> TaskStopped:
    return TaskStopped(
        f"attempt {job.call.attempt} of task {job.call.task_name!r} (run {job.call.run_id}) "
        "was killed on request"
    )


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _killpg(pid: int, sig: int) -> None:
    if pid <= 0:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, OSError):
        pass


def _emit_log(data: dict[str, Any]) -> None:
    record = logging.makeLogRecord(data)
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


def _report_internal(error: BaseException) -> None:
    logging.getLogger("woflo.multiprocess").error(
        "unreadable message from a worker; the worker is killed", exc_info=error
    )
