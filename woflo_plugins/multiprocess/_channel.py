"""Length-prefixed messages over a Unix stream socket: the caller <-> worker link.

A small stand-in for ``multiprocessing.connection.Connection`` (whose import alone costs a
worker 10-15 ms at start): ``send_bytes``, ``send_many``, ``recv_bytes``, ``try_recv``, ``poll``,
``fileno``, ``close``.
"""

from __future__ import annotations

import select
import socket
import struct

_HEADER = struct.Struct("!Q")


class Channel:
    """One end of a worker's socket; a message is an 8-byte length, then the bytes.

    Reads take what the socket has, up to :data:`CHUNK` bytes at a time, so a burst of small
    messages (log records) costs one system call, not two each: :meth:`has_message` says
    whether one is already here (a selector cannot see it)."""

    __slots__ = ("_buffer", "_scratch", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._scratch: memoryview | None = None

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        """Wrap an inherited socket file descriptor."""
        return cls(socket.socket(fileno=fd))

    def fileno(self) -> int:
        """The socket's file descriptor (for selectors)."""
        return self._sock.fileno()

    def send_bytes(self, data: bytes) -> None:
        """Send one message; raises ``OSError`` when the peer is gone."""
        if len(data) <= 65536:
            self._sock.sendall(_HEADER.pack(len(data)) + data)
        else:
            self._sock.sendall(_HEADER.pack(len(data)))
            self._sock.sendall(data)

    def send_many(self, messages: list[bytes]) -> None:
        """Send several small messages in one system call."""
        self._sock.sendall(b"".join([b for m in messages for b in (_HEADER.pack(len(m)), m)]))

    def try_recv(self) -> bytearray | None:
        """A message if one is here or can be read without waiting, else ``None``; raises
        ``EOFError`` when the peer closed the socket."""
        if not self.has_message() and not (self._fill(socket.MSG_DONTWAIT) and self.has_message()):
            return None
        return self.recv_bytes()

    def recv_bytes(self) -> bytearray:
        """Receive one message; raises ``EOFError`` when the peer closed the socket."""
        buffer = self._buffer
        while len(buffer) < _HEADER.size:
            self._fill()
        (size,) = _HEADER.unpack_from(buffer)
        end = _HEADER.size + size
        if len(buffer) >= end:
            message = buffer[_HEADER.size : end]
            del buffer[:end]
            return message
        message = bytearray(size)  # a large one: the rest straight into place
        got = len(buffer) - _HEADER.size
        message[:got] = memoryview(buffer)[_HEADER.size :]
        buffer.clear()
        view = memoryview(message)
        while got < size:
            n = self._sock.recv_into(view[got:])
            if n == 0:
                raise EOFError("the other end of the worker's socket closed")
            got += n
        return message

    def has_message(self) -> bool:
        """Whether a whole message is already read (no system call)."""
        buffer = self._buffer
        if len(buffer) < _HEADER.size:
            return False
        size: int = _HEADER.unpack_from(buffer)[0]
        return len(buffer) >= _HEADER.size + size

    def has_data(self) -> bool:
        """Whether part of a message is read already (no system call)."""
        return bool(self._buffer)

    def poll(self, timeout: float = 0.0) -> bool:
        """Whether a message (or end of file) can be read within ``timeout`` seconds."""
        if self.has_message():
            return True
        poller = select.poll()  # not select(): its descriptor may be above 1024
        poller.register(self._sock, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout * 1000))))

    def close(self) -> None:
        """Close this end (the peer reads end of file)."""
        self._sock.close()

    def _fill(self, flags: int = 0) -> bool:
        scratch = self._scratch
        if scratch is None:
            scratch = self._scratch = memoryview(bytearray(CHUNK))
        try:
            n = self._sock.recv_into(scratch, 0, flags)
        except BlockingIOError:  # (only with MSG_DONTWAIT)
            return False
        if not n:
            raise EOFError("the other end of the worker's socket closed")
        self._buffer += scratch[:n]
        return True


CHUNK = 16384
"""Bytes asked of the socket at a time."""
