"""A worker's inbox: the jobs it received and has not started, and the caller's cancels.

The caller may send a worker *queued* jobs, to run after the one it runs (prefetch). The
worker starts a queued job only once it has told the caller so: a result announces the queued
job that starts next, or a ``b"s"`` goes first. A queued job the caller cancelled before that
announcement never starts (``b"k"`` says so), and neither does one the worker gives back: when
an attempt runs longer than :data:`GIVE_BACK_AFTER`, a helper thread returns the queued jobs
behind it (``b"k"`` too), so that they do not wait for it while other workers are free.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from woflo_plugins.multiprocess import _wire
from woflo_plugins.multiprocess._channel import Channel

GIVE_BACK_AFTER = 0.01
"""Seconds an attempt runs before the queued jobs behind it are given back to the caller."""


class Inbox:
    """Jobs received and not started, in order; the caller's cancels; the give-back helper."""

    def __init__(self, conn: Channel, send: Callable[..., None]) -> None:
        self._conn = conn
        self._send = send
        self.jobs: collections.deque[bytearray] = collections.deque()
        self._skip: set[int] = set()  # queued jobs the caller cancelled
        self.announced = 0  # the queued job the last result said starts next
        self.not_run: list[bytearray] = []  # frames given back or cancelled (see absorb)
        self._cond = threading.Condition(threading.Lock())
        self._armed = False  # an attempt with queued jobs behind it runs
        self._since = 0.0
        self._timed = False  # the helper waits for a deadline (no need to wake it)
        self._helper: threading.Thread | None = None

    # ---- the worker's main thread, between attempts ------------------------------------------

    def pull(self, block: bool) -> None:
        """Take what the caller sent (``block``: wait for one message first)."""
        conn = self._conn
        frame = conn.recv_bytes() if block else conn.try_recv()
        while frame is not None:
            if len(frame) == _wire.CANCEL.size:
                self._skip.add(_wire.CANCEL.unpack(frame)[0])
            else:
                self.jobs.append(frame)
            frame = conn.recv_bytes() if conn.has_message() else None

    def skipped(self) -> list[bytes]:
        """Drop the cancelled queued jobs at the head; their ``b"k"`` replies."""
        replies = []
        jobs, skip = self.jobs, self._skip
        while jobs and skip:
            seq, queued = _wire.job_header(jobs[0])
            if not (queued and seq in skip) or seq == self.announced:  # announced: it runs
                break
            self.not_run.append(jobs.popleft())
            skip.discard(seq)
            replies.append(_wire.pack_reply(b"k", 0.0, b"", seq))
        return replies

    def next_job(self) -> bytearray:
        """The next job to run, waiting for one; a queued one is announced first (after a look
        for its cancel). Raises ``EOFError`` or ``OSError`` once the caller is gone."""
        while True:
            if not self.jobs:
                self.pull(block=True)
            replies = self.skipped()
            if not self.jobs:
                if replies:
                    self._send(*replies)
                continue
            frame = self.jobs[0]
            seq, queued = _wire.job_header(frame)
            if queued and seq != self.announced:
                self.pull(block=False)
                replies += self.skipped()
                if not self.jobs or self.jobs[0] is not frame:
                    self._send(*replies)
                    continue
                replies.append(_wire.pack_reply(b"s", 0.0, b"", seq))
            self.jobs.popleft()
            if replies:
                self._send(*replies)
            if self._skip:  # cancels that came after the job was announced: too late
                self._skip.difference_update([s for s in self._skip if s <= seq])
            self.announced = 0
            return frame

    def announce(self, look: bool) -> list[bytes]:
        """Before a result is sent: the ``b"k"`` replies to send first; :attr:`announced` is
        then the queued job the result names (0: none). ``look``: read the socket first."""
        try:
            if look or not self.jobs:
                self.pull(block=False)
        except (EOFError, OSError):
            pass  # the result still goes; the next read ends the loop
        replies = self.skipped()
        if self.jobs:
            seq, queued = _wire.job_header(self.jobs[0])
            self.announced = seq if queued else 0
        return replies

    # ---- the give-back helper ----------------------------------------------------------------

    def attempt_starts(self, queued: bool) -> None:
        """An attempt starts: if queued jobs may be behind it, arm the helper (``queued``: the
        attempt was queued itself; the caller queues more behind such a one, and otherwise
        sends them with the job, so they are here)."""
        if not queued and not self.jobs and not self._conn.has_data():
            return
        with self._cond:
            self._armed = True
            self._since = time.monotonic()
            if self._helper is None:
                self._helper = threading.Thread(
                    target=self._give_back_late, name="woflo-give-back", daemon=True
                )
                self._helper.start()
            elif not self._timed:
                self._cond.notify()

    def attempt_ends(self) -> None:
        """The attempt is over (and the helper, if it was giving jobs back, is done: it reads
        the socket then, which this thread does next)."""
        if self._helper is not None:
            with self._cond:
                self._armed = False

    def _give_back_late(self) -> None:
        with self._cond:
            while True:
                if not self._armed:
                    self._timed = False
                    self._cond.wait()
                    continue
                left = self._since + GIVE_BACK_AFTER - time.monotonic()
                if left > 0:
                    self._timed = True
                    self._cond.wait(left)
                    continue
                self._armed = False  # once per attempt
                self._give_back()

    def _give_back(self) -> None:
        """Return every queued job received (none is announced while an attempt runs)."""
        try:
            self.pull(block=False)
        except (EOFError, OSError):
            return
        replies = []
        kept: list[bytearray] = []
        for frame in self.jobs:
            seq, queued = _wire.job_header(frame)
            if queued:
                self.not_run.append(frame)
                self._skip.discard(seq)
                replies.append(_wire.pack_reply(b"k", 0.0, b"", seq))
            else:
                kept.append(frame)
        self.jobs.clear()
        self.jobs.extend(kept)
        if replies:
            try:
                self._send(*replies)
            except OSError:
                pass


def absorb(frame: bytearray, tasks: dict[bytes, Any], unloaded: dict[bytes, bytes]) -> Any:
    """What a job that does not run leaves this worker with, as the caller counts it: its
    task (sent once per worker) into ``unloaded``; its world (the caller's directory and
    environment, sent when changed), returned to apply before the next job."""
    token, meta, task_blob, _args = _wire.unpack_job(frame)
    if task_blob and token not in tasks:
        unloaded[token] = bytes(task_blob)
    return meta[3]
