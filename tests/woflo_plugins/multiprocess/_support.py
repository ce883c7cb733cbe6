"""Tasks and helpers for the multiprocess runner's tests.

The tasks live in this small module, importable by its full name from the repository root, so
a worker loads them by reference, as it would a user's module, without importing pytest.

Tasks that must be held (to observe a run while it executes) block on a *gate*: a directory
where the task writes ``<name>.pid`` and then waits, bounded, for a ``release`` file. Every
wait here is bounded, so a bug shows up as a failure, never as a hung test run. The waits,
pid files and process checks the tests use are the suite's own, in ``tests/_helpers.py``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests._helpers import TIMEOUT, read_pid
from woflo import task

HOLD = 30.0
"""Longest a held task blocks before giving up on its own (the test stops it long before)."""


# ---- helpers for the tests (run in the test process) ----------------------------------------


def pool_counts() -> dict[str, int]:
    """Idle, busy and starting workers and pending attempts of the pool (zeros if none)."""
    import woflo_plugins.multiprocess as mp

    status = mp.status()
    if status is None:
        return {"idle": 0, "busy": 0, "starting": 0, "pending": 0}
    return {key: getattr(status, key) for key in ("idle", "busy", "starting", "pending")}


def worker_pids() -> set[int]:
    """The pids of the pool's live workers."""
    import woflo_plugins.multiprocess as mp

    status = mp.status()
    return {w.pid for w in status.workers} if status is not None else set()


def zygote_pid() -> int:
    """The pid of the pool's zygote (the pool must be running)."""
    import woflo_plugins.multiprocess as mp

    status = mp.status()
    assert status is not None, "no pool is running"
    assert status.zygote_pid is not None, "the pool's zygote has not started"
    return status.zygote_pid


def raised_as_its_own_type(
    run: Any, kind: type[BaseException], line: str, match: str | None = None
) -> Any:
    """The exception ``run.get_result()`` raises (matching ``match``), checked to be exactly
    ``kind``, not a stand-in, with the worker's traceback, showing ``line``, as its cause."""
    import pytest  # (called in the test process only: workers never import pytest)

    from woflo.errors import RemoteTraceback

    with pytest.raises(kind, match=match) as info:
        run.get_result(timeout=TIMEOUT)
    error = info.value
    assert type(error) is kind
    assert isinstance(error.__cause__, RemoteTraceback)
    assert line in error.__cause__.tb
    return error


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Gate:
    """A directory held tasks report to; :meth:`release` lets all of them finish."""

    path: Path

    def pid(self, name: str, timeout: float = TIMEOUT) -> int:
        """The pid of the worker running the held task ``name``, once it has started."""
        return read_pid(self.path / f"{name}.pid", timeout)

    def started(self, name: str) -> bool:
        return (self.path / f"{name}.pid").exists()

    def release(self) -> None:
        (self.path / "release").touch()


def run_script(
    path: Path,
    *args: str,
    flags: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run a Python script in a fresh interpreter; fail (not hang) if it runs too long."""
    return subprocess.run(
        [sys.executable, *flags, str(path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=path.parent,
        env=script_env(env),
        stdin=subprocess.DEVNULL,
    )


def script_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a script: ours without woflo or Python settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WOFLO_", "PYTHON"))}
    env["WOFLO_HOME"] = os.environ["WOFLO_HOME"]  # (the suite's own, never the user's)
    env.update(extra or {})
    return env


# ---- tasks (run in workers) ---------------------------------------------------------------


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def hold(gate: Path, name: str) -> int:
    """Report this process's pid as ``<name>.pid`` in ``gate``, then wait for the release."""
    _write_atomic(gate / f"{name}.pid", str(os.getpid()))
    deadline = time.monotonic() + HOLD
    while not (gate / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: never released")
        time.sleep(0.005)
    return os.getpid()


held = task(hold)


def step(gate: Path, name: str, hold_it: bool) -> int:
    """Quick: note ``<name>.ran`` in ``gate`` and return the pid; ``hold_it``: :func:`hold`."""
    if hold_it:
        return hold(gate, name)
    _write_atomic(gate / f"{name}.ran", str(os.getpid()))
    return os.getpid()


stepped = task(step)


@task(max_concurrency=1)
def held_one_at_a_time(gate: Path, name: str) -> int:
    return hold(gate, name)


def one_running_one_pending(gate: Gate, runs: list[Any]) -> tuple[Any, Any]:
    """Two runs of :func:`held_one_at_a_time`, both appended to ``runs``: the first running
    (it has started), the second called after it, waiting for the task's only slot."""
    first = held_one_at_a_time(gate.path, "first")
    runs.append(first)
    gate.pid("first")
    second = held_one_at_a_time(gate.path, "second")
    runs.append(second)
    return first, second


@task
def held_ignoring_sigterm(gate: Path, name: str) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return hold(gate, name)


@task
def held_with_grandchild(gate: Path, name: str) -> int:
    child = subprocess.Popen(["sleep", "60"])
    _write_atomic(gate / f"{name}.child", str(child.pid))
    return hold(gate, name)


@task
def add(a: Any, b: Any) -> Any:
    return a + b


@task
def getpid() -> int:
    return os.getpid()


@task
def noop() -> None:
    return None


@task
def apply(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task
def meet(gate: Path, name: str, count: int) -> int:
    """Arrive at a rendezvous of ``count`` runs; return once all have arrived (bounded)."""
    _write_atomic(gate / f"{name}.pid", str(os.getpid()))
    deadline = time.monotonic() + HOLD
    while len(list(gate.glob("*.pid"))) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: only {len(list(gate.glob('*.pid')))} of {count} came")
        time.sleep(0.005)
    return os.getpid()


@task
def exit_hard(gate: Path, code: int) -> None:
    _write_atomic(gate / "exit.pid", str(os.getpid()))
    os._exit(code)


@task
def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


@task
def sys_exit(code: int) -> None:
    sys.exit(code)


@task
def log_warning(logger_name: str, message: str) -> int:
    logging.getLogger(logger_name).warning("%s from pid %d", message, os.getpid())
    return os.getpid()


@task
def log_then_die(logger_name: str, code: int) -> None:
    logging.getLogger(logger_name).warning("last words from pid %d", os.getpid())
    os._exit(code)


def count_attempt(gate: Path) -> int:
    """Record one attempt as a new file in ``gate``; return this attempt's number."""
    number = 1
    while True:
        try:
            fd = os.open(gate / f"attempt-{number}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            number += 1
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return number


@task(retries=2)
def fails_twice(gate: Path) -> int:
    number = count_attempt(gate)
    if number < 3:
        raise ConnectionError(f"attempt {number} fails")
    return number


@task(retries=1)
def crashes_once(gate: Path) -> int:
    if count_attempt(gate) == 1:
        os._exit(3)
    return os.getpid()


@task(retries=1, retry_sleep_time=30)
def fails_then_waits_long(gate: Path) -> None:
    count_attempt(gate)
    raise ConnectionError("try again later")


@task(retries=3)
def exits_cleanly(gate: Path) -> None:
    count_attempt(gate)
    sys.exit(1)


# ---- values and exceptions that do not travel well ----------------------------------------


class TwoArgError(Exception):
    """An exception whose constructor does not take its own ``args`` back."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"a={a}, b={b}")
        self.a = a
        self.b = b


@dataclass(frozen=True)
class FrozenError(Exception):
    """A frozen dataclass exception: its attributes cannot be set after construction."""

    code: int
    reason: str = "frozen"


@task
def raise_two_arg(a: int, b: int) -> None:
    raise TwoArgError(a, b)


@task
def raise_frozen(code: int) -> None:
    raise FrozenError(code, "cold")


def _explode(message: str) -> Any:
    raise ValueError(message)


def _exit_now(code: int) -> Any:
    sys.exit(code)


def _die(code: int) -> Any:
    os._exit(code)


class UnpicklesWith:
    """Pickles fine; unpickling it calls ``fn(arg)`` (which raises, exits, or kills)."""

    def __init__(self, fn: Callable[[Any], Any], arg: Any) -> None:
        self.fn = fn
        self.arg = arg

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.fn, (self.arg,))


@task
def identity(value: Any) -> Any:
    return value


@task
def returns_lock() -> Any:
    import threading

    return threading.Lock()


@task
def returns_unloadable(fn: Callable[[Any], Any], arg: Any) -> Any:
    return UnpicklesWith(fn, arg)


@task
def ignore(_value: Any) -> str:
    return "ran"


# ---- for the fault suite (test_fault_suite.py) ---------------------------------------------


def return_value(value: Any) -> Any:
    return value


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def hold_then_return(gate: Path, name: str, value: Any) -> Any:
    """Like :func:`hold`, but return ``value`` (so every call of a test can have its own)."""
    hold(gate, name)
    return value


def _segfault(address: int) -> Any:
    import ctypes

    return ctypes.string_at(address)


class PicklesWith:
    """Pickling it calls ``fn(arg)`` (which raises, exits, or kills the process)."""

    def __init__(self, fn: Callable[[Any], Any], arg: Any) -> None:
        self.fn = fn
        self.arg = arg

    def __reduce__(self) -> tuple[Any, ...]:
        self.fn(self.arg)
        return (str, ("unreachable",))


@task
def returns_unpicklable_by(fn: Callable[[Any], Any], arg: Any) -> Any:
    return PicklesWith(fn, arg)


class DiesWhenFreed:
    """An object whose ``__del__`` ends the process with ``os._exit(code)``, when *armed*.

    Only a copy made in a worker is armed: one the test creates is not, pickling it for a
    worker arms the worker's copy, and pickling an armed one back disarms the caller's copy.
    """

    def __init__(self, code: int, armed: bool = False) -> None:
        self.code = code
        self.pid = os.getpid() if armed else None

    def __reduce__(self) -> tuple[Any, ...]:
        return (DiesWhenFreed, (self.code, self.pid is None))

    def __del__(self) -> None:
        if self.pid == os.getpid():
            os._exit(self.code)


@task
def returns_dies_when_freed(code: int) -> tuple[int, DiesWhenFreed]:
    return os.getpid(), DiesWhenFreed(code, armed=True)


@task
def getpid_ignoring(_value: Any) -> int:
    return os.getpid()


@task
def dies_after_returning(gate: Path, code: int, value: Any) -> Any:
    """Return ``value`` at once, leaving behind an object whose ``__del__`` ends the worker:
    a thread frees it once the gate is released (so, after the caller has the result)."""
    import threading

    holder = [DiesWhenFreed(code, armed=True)]

    def free_later() -> None:
        deadline = time.monotonic() + HOLD
        while not (gate / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        holder.clear()

    threading.Thread(target=free_later, daemon=True).start()
    _write_atomic(gate / "dies.pid", str(os.getpid()))
    return value


class KwOnlyError(Exception):
    """An exception whose constructor takes keyword-only arguments."""

    def __init__(self, *, code: int, reason: str = "kw-only") -> None:
        super().__init__(f"code={code} reason={reason}")
        self.code = code
        self.reason = reason


@task
def raise_kw_only(code: int) -> None:
    raise KwOnlyError(code=code, reason="keywords")


@task
def raise_with_unpicklable_argument(message: str) -> None:
    import threading

    raise ValueError(message, threading.Lock())


@task
def raise_from_a_module_only_the_worker_has(directory: Path) -> None:
    """Raise an exception whose class lives in a module the caller cannot import."""
    (directory / "only_in_the_worker.py").write_text(
        "class OnlyInTheWorker(Exception):\n    pass\n"
    )
    sys.path.insert(0, str(directory))
    try:
        import only_in_the_worker  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(directory))
    raise only_in_the_worker.OnlyInTheWorker("cannot be loaded by the caller")


@task(retries=1)
def held_then_retried(gate: Path) -> int:
    """The first attempt holds (to be killed from outside); the next returns its pid."""
    if count_attempt(gate) == 1:
        hold(gate, "first")
    return os.getpid()


def main_thread_in(*names: str) -> bool:
    """Whether the main thread of this process is executing a function named one of ``names``."""
    import threading

    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    while frame is not None:
        if frame.f_code.co_name in names:
            return True
        frame = frame.f_back
    return False


@task
def large_result_after_a_log(gate: Path, logger_name: str, size: int, die: bool) -> bytes:
    """Log a warning (the test's handler blocks the caller's watcher thread on it), then return
    ``size`` bytes. A thread writes ``sending`` in the gate once the result is being sent,
    and with ``die`` then ends the worker with ``os._exit(9)``, mid-send."""
    import threading

    logging.getLogger(logger_name).warning("large result coming from pid %d", os.getpid())

    def watch() -> None:
        deadline = time.monotonic() + HOLD
        while not main_thread_in("send_bytes", "_send_bytes") and time.monotonic() < deadline:
            time.sleep(0.001)
        _write_atomic(gate / "sending", str(os.getpid()))
        if die:
            os._exit(9)

    threading.Thread(target=watch, daemon=True).start()
    return b"r" * size


@task
def stops_itself_after_returning(gate: Path, logger_name: str) -> int:
    """Hold; once released, log a warning (the test's handler holds the caller's watcher
    thread on it, so no next job comes yet) and return; as soon as the worker waits for its
    next job, it stops itself with SIGSTOP (as ``kill -STOP`` or a debugger would): from then
    on it reads nothing."""
    import threading

    hold(gate, "stopper")
    logging.getLogger(logger_name).warning("stopping pid %d", os.getpid())

    def stop_when_back() -> None:
        deadline = time.monotonic() + HOLD
        while time.monotonic() < deadline:
            if main_thread_in("recv_bytes") and not main_thread_in("stops_itself_after_returning"):
                os.kill(os.getpid(), signal.SIGSTOP)
                return
            time.sleep(0.0005)

    threading.Thread(target=stop_when_back, daemon=True).start()
    return os.getpid()


@task
def size_of(data: bytes) -> int:
    return len(data)


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of ``pid`` in MB, from /proc (0 for a process gone or a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_state(pid: int) -> str:
    """The state letter of ``pid`` in /proc (``T``: stopped, ``Z``: zombie), ``""`` if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


@task
def where_and_what(name: str) -> tuple[str, str | None, int]:
    """The worker's directory, environment variable ``name``, and pid."""
    return os.getcwd(), os.environ.get(name), os.getpid()


@task
def change_the_process(directory: str) -> int:
    """Change what a task can change in its worker: directory, environment, sys.path, a signal
    handler, an alarm, the umask."""
    import signal

    os.chdir(directory)
    os.environ["WOFLO_TEST_LEAK"] = "leaked"
    sys.path.insert(0, "/nowhere/leaked")
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.alarm(1000)
    os.umask(0o077)
    return os.getpid()


@task
def what_a_run_can_change() -> tuple[str, str | None, bool, bool, int, int, int]:
    """What :func:`change_the_process` changes, as the next run sees it."""
    import signal

    mask = os.umask(0)
    os.umask(mask)
    return (
        os.getcwd(),
        os.environ.get("WOFLO_TEST_LEAK"),
        "/nowhere/leaked" in sys.path,
        signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN,
        signal.alarm(0),
        os.getpid(),
        mask,
    )


@task
def close_stdout() -> int:
    """Close the worker's standard output, which nothing can reopen."""
    sys.stdout.close()
    return os.getpid()


@task
def starts_children(gate: Path) -> int:
    """Start a child in the worker's process group and one in a session of its own (as a
    daemonizing tool does), report their pids, then wait to be stopped."""
    same = subprocess.Popen(["sleep", "60"])
    own = subprocess.Popen(["sleep", "60"], start_new_session=True)
    _write_atomic(gate / "children.pid", f"{same.pid} {own.pid}")
    return hold(gate, "parent")
