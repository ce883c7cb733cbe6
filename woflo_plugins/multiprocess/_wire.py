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
#   job    JOB header (token, length of meta, length of task blob) + meta + task blob + args
#   reply  REPLY header (kind, duration) + blob; kind is b"o" (value), b"e" (error), b"l" (log)
JOB = struct.Struct("!8sII")
REPLY = struct.Struct("!cd")


def pack_job(token: bytes, meta: tuple[Any, ...], task_blob: bytes, args_blob: bytes) -> bytes:
    """Frame one attempt for a worker; ``task_blob`` is empty when the worker knows the task."""
    meta_blob = pickle.dumps(meta, PROTOCOL)
    return b"".join(
        (JOB.pack(token, len(meta_blob), len(task_blob)), meta_blob, task_blob, args_blob)
    )


def unpack_job(frame: bytes | bytearray) -> tuple[bytes, tuple[Any, ...], memoryview, memoryview]:
    """The inverse of :func:`pack_job` (the blobs are views into ``frame``)."""
    token, meta_len, task_len = JOB.unpack_from(frame)
    view = memoryview(frame)[JOB.size :]
    return (
        token,
        loads(view[:meta_len]),
        view[meta_len : meta_len + task_len],
        view[meta_len + task_len :],
    )


def pack_reply(kind: bytes, duration: float, blob: bytes) -> bytes:
    """Frame a message from a worker."""
    return REPLY.pack(kind, duration) + blob


def unpack_reply(frame: bytes | bytearray) -> tuple[bytes, float, memoryview]:
    """The inverse of :func:`pack_reply`."""
    kind, duration = REPLY.unpack_from(frame)
    return kind, duration, memoryview(frame)[REPLY.size :]
