"""The multiprocess runner's wire protocol: one length-prefixed frame per message each way.

What goes inside the frames (pickles of tasks, arguments, results, exceptions, log records) is
the core's pickling policy, :mod:`woflo.remote`; this module only frames it.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

from woflo.remote import PROTOCOL, loads

# One frame per message each way (fewer system calls than a frame per part):
#   job     JOB header (token, length of meta, length of task blob, sequence number, queued)
#           + meta + task blob + args
#   cancel  CANCEL: the sequence number of a queued job not to start (8 bytes, nothing else)
#   reply   REPLY header (kind, duration, sequence number) + blob; kind is b"o" (value),
#           b"e" (error), b"l" (log), b"s" (queued job started), b"k" (queued job skipped)
JOB = struct.Struct("!8sIIq?")
CANCEL = struct.Struct("!q")
REPLY = struct.Struct("!cdq")


def pack_job(
    token: bytes,
    meta: tuple[Any, ...],
    task_blob: bytes,
    args_blob: bytes,
    seq: int = 0,
    queued: bool = False,
) -> bytes:
    """Frame one attempt for a worker; ``task_blob`` is empty when the worker knows the task.
    A ``queued`` job (sent to a busy worker) is started only once announced (see _worker)."""
    meta_blob = pickle.dumps(meta, PROTOCOL)
    return b"".join(
        (
            JOB.pack(token, len(meta_blob), len(task_blob), seq, queued),
            meta_blob,
            task_blob,
            args_blob,
        )
    )


def job_header(frame: bytes | bytearray) -> tuple[int, bool]:
    """A job frame's sequence number and whether it was queued, without unpickling it."""
    _token, _meta, _task, seq, queued = JOB.unpack_from(frame)
    return seq, queued


def unpack_job(frame: bytes | bytearray) -> tuple[bytes, tuple[Any, ...], memoryview, memoryview]:
    """The inverse of :func:`pack_job` (the blobs are views into ``frame``)."""
    token, meta_len, task_len, _seq, _queued = JOB.unpack_from(frame)
    view = memoryview(frame)[JOB.size :]
    return (
        token,
        loads(view[:meta_len]),
        view[meta_len : meta_len + task_len],
        view[meta_len + task_len :],
    )


def pack_reply(kind: bytes, duration: float, blob: bytes, seq: int = 0) -> bytes:
    """Frame a message from a worker; ``seq``: for a result, the queued job the worker starts
    next (0: none announced), for b"s" and b"k" the job started or skipped."""
    return REPLY.pack(kind, duration, seq) + blob


def unpack_reply(frame: bytes | bytearray) -> tuple[bytes, float, int, memoryview]:
    """The inverse of :func:`pack_reply`."""
    kind, duration, seq = REPLY.unpack_from(frame)
    return kind, duration, seq, memoryview(frame)[REPLY.size :]
