"""Result cache: task values kept across program runs, under ``WOFLO_HOME/cache``.

The built-in ``cache`` plugin (:mod:`woflo_plugins.cache`) stores the value of every
completed run of a task decorated with ``cache=True`` (or ``cache_key=``) and offers it to the
next run of the same key; this module is the store both it and ``woflo cache`` use::

    from woflo import cache

    cache.entries(task="download")      # [{key, task, size, created_at, expires_at, used_at}]
    cache.clear(task="download")        # how many entries were removed

An index in SQLite (``WOFLO_HOME/cache/index.sqlite3``, WAL mode) maps each key to a file of
``WOFLO_HOME/cache/values`` holding the pickled value, written to a temporary file and renamed
into place, so a reader never sees half a value and concurrent writers of one key never
corrupt it. The directory is the user's only (mode 0700, files 0600): unpickling a value runs
code, so nobody else may put one there. The cache is bounded: beyond ``WOFLO_CACHE_MAX_BYTES``
(default 1 GiB) the least recently used entries go.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import pickle
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from woflo._schema import BUSY_TIMEOUT_MS, prepare

__all__ = [
    "MAX_BYTES_ENV",
    "CacheError",
    "clear",
    "directory",
    "dumps",
    "entries",
    "load",
    "max_bytes",
    "save",
]

MAX_BYTES_ENV = "WOFLO_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 1 << 30
_SCHEMA = """
    CREATE TABLE IF NOT EXISTS entries (
        key TEXT PRIMARY KEY,
        task TEXT NOT NULL,
        file TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        used_at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS entries_by_use ON entries (used_at);
    CREATE INDEX IF NOT EXISTS entries_by_task ON entries (task);
"""


class CacheError(Exception):
    """The cache cannot be opened or used (the message says why and where)."""


def directory() -> Path:
    """``WOFLO_HOME/cache``: the index and the values."""
    from woflo.history import home

    return home() / "cache"


def _private_directory(path: Path) -> None:
    """Create ``path`` for this user only; refuse one that others may write into."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.name == "posix":
        info = path.stat()
        if info.st_uid != os.getuid():
            raise CacheError(f"{path} belongs to another user: woflo will not load values from it")
        if info.st_mode & 0o077:
            os.chmod(path, 0o700)


class _Index:
    """One connection to the index, shared by the threads of this process (under a lock)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where: tuple[str | None, str | None] = (None, None)  # (the settings it came from)
        self.values = root / "values"
        self.values_dir = str(self.values)
        _private_directory(root)
        _private_directory(self.values)
        path = root / "index.sqlite3"
        if not path.exists():  # (SQLite gives its WAL files the database file's mode)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.lock = threading.Lock()
        self.db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            prepare(self.db)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()


_index: _Index | None = None
_index_lock = threading.Lock()


def _open() -> _Index:
    global _index
    index = _index
    where = (os.environ.get("WOFLO_HOME"), os.environ.get("XDG_STATE_HOME"))
    if index is not None and index.where == where:
        return index
    root = directory()
    with _index_lock:
        if _index is None or _index.root != root:  # (WOFLO_HOME changed: a test, say)
            if _index is not None:
                with _index.lock:
                    _index.close()
                _index = None
            try:
                _index = _Index(root)
            except (OSError, sqlite3.Error) as exc:
                raise CacheError(f"cannot open the cache in {root}: {exc}") from exc
        _index.where = where
        return _index


def load(key: str) -> tuple[bool, Any]:
    """``(True, value)`` for a live entry of ``key``, else ``(False, None)``.

    A hit reads the value's file alone (its header holds the expiry): no index query. An
    expired entry is removed; a corrupt or unreadable value is a miss, with a warning on
    stderr, and its entry is removed: never a wrong value, never an error.
    """
    try:
        index = _open()
    except CacheError as exc:
        _warn(f"cannot read the cache: {exc}")
        return False, None
    name = f"{key}.pickle"
    path = os.path.join(index.values_dir, name)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return False, None
    except OSError as exc:
        _warn(f"the cached value of {key[:16]} cannot be read ({exc!r}); running the task")
        return False, None
    try:
        try:
            data = _read_all(descriptor)
        finally:
            os.close(descriptor)
        header, _, body = data.partition(b"\n")
        magic, expires, checksum = header.split(b" ")
        if magic != _MAGIC:
            raise ValueError("not a woflo cache file")
        if hashlib.sha256(body).hexdigest().encode() != checksum:
            raise ValueError("its checksum does not match: the file was changed or cut short")
        if expires != b"-" and float(expires) <= time.time():
            _forget(index, key, name)
            return False, None
        value = pickle.loads(body)
    except Exception as exc:  # (a truncated file, a class that is gone, a disk error)
        _warn(f"the cached value of {key[:16]} cannot be read ({exc!r}); running the task")
        _forget(index, key, name)
        return False, None
    if not _used:
        _write_uses_at_exit()
    _used.add(key)
    return True, value


_MAGIC = b"woflo-cache-2"


def _read_all(descriptor: int) -> bytes:
    chunks = [os.read(descriptor, max(os.fstat(descriptor).st_size, 1 << 16))]
    while chunks[-1]:
        chunks.append(os.read(descriptor, 1 << 20))
    return b"".join(chunks)


def dumps(value: Any, task: str) -> bytes | None:
    """``value`` pickled as the cache keeps it; ``None`` (and a warning) if it cannot be."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        _warn(f"the value of a run of task {task!r} cannot be pickled ({exc!r}): not cached")
        return None


def save(key: str, task: str, data: bytes, expiration: float | None = None) -> bool:
    """Store a value as :func:`dumps` pickled it, for ``key`` (for ``expiration`` seconds;
    ``None``: until evicted); whether it was stored (a failure is a warning, never an error)."""
    try:
        index = _open()
        now = time.time()
        expires_at = None if expiration is None else now + expiration
        descriptor, temporary = tempfile.mkstemp(dir=index.values, prefix=".new-")
        try:
            with os.fdopen(descriptor, "wb") as file:
                expiry = b"-" if expires_at is None else repr(expires_at).encode()
                checksum = hashlib.sha256(data).hexdigest().encode()
                file.write(_MAGIC + b" " + expiry + b" " + checksum + b"\n")
                file.write(data)
            name = f"{key}.pickle"
            os.replace(temporary, index.values / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        with index.lock:
            index.db.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE "
                "SET task = excluded.task, file = excluded.file, size = excluded.size, "
                "created_at = excluded.created_at, expires_at = excluded.expires_at, "
                "used_at = excluded.used_at",
                (
                    key,
                    task,
                    name,
                    len(data),
                    now,
                    None if expiration is None else now + expiration,
                    now,
                ),
            )
        _evict(index)
    except (OSError, sqlite3.Error, CacheError) as exc:
        _warn(f"cannot store a value in the cache: {exc}")
        return False
    return True


def entries(*, task: str | None = None) -> list[dict[str, Any]]:
    """The entries, most recently used first (``task``: only that task's)."""
    from woflo.history import iso_time

    sql = "SELECT key, task, size, created_at, expires_at, used_at FROM entries"
    params: tuple[Any, ...] = ()
    if task is not None:
        sql += " WHERE task = ?"
        params = (task,)
    _write_uses()
    index = _open()
    try:
        with index.lock:
            rows = index.db.execute(sql + " ORDER BY used_at DESC", params).fetchall()
    except sqlite3.Error as exc:
        raise CacheError(f"cannot read the cache in {index.root}: {exc}") from exc
    return [
        {
            "key": key,
            "task": name,
            "size": size,
            "created_at": iso_time(created),
            "expires_at": iso_time(expires),
            "used_at": iso_time(used),
        }
        for key, name, size, created, expires, used in rows
    ]


def clear(*, task: str | None = None) -> int:
    """Remove every entry (``task``: that task's); how many were removed. Clearing them all
    also removes value files the index does not know (left by a program killed between the
    two writes), and an index that cannot be read at all."""
    root = directory()
    try:
        index = _open()
        with index.lock:
            sql = "SELECT key, file FROM entries" + (" WHERE task = ?" if task else "")
            rows = index.db.execute(sql, (task,) if task else ()).fetchall()
            index.db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k, _ in rows])
    except (CacheError, sqlite3.Error) as exc:
        if task is not None:
            raise CacheError(f"cannot clear the cache in {root}: {exc}") from exc
        return _remove_everything(root)
    for _key, name in rows:
        (index.values / name).unlink(missing_ok=True)
    if task is None:
        for orphan in index.values.glob("*.pickle"):
            orphan.unlink(missing_ok=True)
    return len(rows)


def _remove_everything(root: Path) -> int:
    """An index that cannot be read: remove it and every value (the cache starts afresh)."""
    global _index
    with _index_lock:
        if _index is not None:
            _index.close()
            _index = None
    values = list((root / "values").glob("*.pickle"))
    for path in [*values, *root.glob("index.sqlite3*")]:
        path.unlink(missing_ok=True)
    return len(values)


def max_bytes() -> int:
    """``WOFLO_CACHE_MAX_BYTES``, or 1 GiB (a bad value is said once, and the default kept)."""
    from woflo.options import from_env, whole_number

    try:
        value = from_env(MAX_BYTES_ENV, whole_number(minimum=0, infinite=True), DEFAULT_MAX_BYTES)
    except Exception as exc:
        _warn(f"{exc}; keeping at most {DEFAULT_MAX_BYTES} bytes")
        return DEFAULT_MAX_BYTES
    return sys.maxsize if value is None else int(value)  # (None: inf, no limit)


def _evict(index: _Index) -> None:
    """Remove the least recently used entries while the cache holds more than its bound."""
    _write_uses()
    limit = max_bytes()
    with index.lock:
        total = index.db.execute("SELECT coalesce(sum(size), 0) FROM entries").fetchone()[0]
        if total <= limit:
            return
        gone = []
        for key, name, size in index.db.execute(
            "SELECT key, file, size FROM entries ORDER BY used_at"
        ).fetchall():
            if total <= limit:
                break
            gone.append((key, name))
            total -= size
        index.db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k, _ in gone])
    for _key, name in gone:
        (index.values / name).unlink(missing_ok=True)


def _forget(index: _Index, key: str, name: str) -> None:
    try:
        with index.lock:
            index.db.execute("DELETE FROM entries WHERE key = ? AND file = ?", (key, name))
        (index.values / name).unlink(missing_ok=True)
    except (OSError, sqlite3.Error):
        pass  # (another program may hold it: the next look will try again)


_used: set[str] = set()
_exit_hook: list[bool] = []


def _write_uses_at_exit() -> None:
    if not _exit_hook:
        _exit_hook.append(True)
        atexit.register(_write_uses)


"""Keys read since the last write of their use times (kept for LRU; written in batches)."""


def _write_uses() -> None:
    """Record when the keys read lately were used (called on each save, and before a list)."""
    if not _used:
        return
    keys = list(_used)
    _used.difference_update(keys)
    try:
        index = _open()
        now = time.time()
        with index.lock:
            index.db.executemany(
                "UPDATE entries SET used_at = ? WHERE key = ?", [(now, k) for k in keys]
            )
    except (CacheError, sqlite3.Error):
        pass


_warned: set[str] = set()


def _warn(message: str) -> None:
    if message in _warned:
        return
    _warned.add(message)
    print(f"woflo: {message}", file=sys.stderr)
