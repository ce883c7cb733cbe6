"""The cache plugin and ``woflo cache``: re-run a program and skip what already succeeded."""

from __future__ import annotations

import datetime
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import woflo_plugins.cache as caching
from tests.woflo_plugins.multiprocess._support import add, hold, run_script, script_env
from woflo import RunState, cache, history, task
from woflo.errors import OptionTypeError, OptionValueError
from woflo.runners import SequentialTaskRun
from woflo.testing import HookRecorder
from woflo_plugins.cache import CacheKeyError

TIMEOUT = 30.0

PROGRAM = """
import os, sys
from woflo import task

LOG = {log!r}

def note(what):
    with open(LOG, "a") as f:
        f.write(what + "\\n")

@task(cache=True)
def load(i):
    note(f"load {{i}}")
    return i * 10

@task(cache=True, runner="sequential")
def combine(a, b):
    note(f"combine {{a}} {{b}}")
    return a + b

total = combine(load(1), load(2))
mapped = load.map([3, 4, 5])
print(total.get_result(), [r.get_result() for r in mapped], total.cached,
      [r.cached for r in mapped], sep="|")
"""


def _program(tmp_path: Path, body: str, **values: Any) -> Path:
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(body).format(**values))
    return script


def _executed(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return sorted(lines)


def test_a_second_program_run_skips_what_succeeded_and_feeds_dependents(tmp_path: Path) -> None:
    log = tmp_path / "executed"
    script = _program(tmp_path, PROGRAM, log=str(log))
    env = {"WOFLO_HOME": str(tmp_path / "home")}
    first = run_script(script, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split("|")[:2] == ["30", "[30, 40, 50]"]
    assert _executed(log) == ["combine 10 20", "load 1", "load 2", "load 3", "load 4", "load 5"]
    second = run_script(script, env=env | {"WOFLO_LOG_LEVEL": "info"})
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "30|[30, 40, 50]|True|[True, True, True]"
    assert _executed(log) == []  # nothing ran again: mapped items and dependents neither
    assert second.stderr.count("task.cached") == 6, second.stderr
    states = {r["state"] for r in history.runs(path=tmp_path / "home" / "history.sqlite3")}
    assert "cached" in states


def test_editing_the_function_invalidates_its_entries(tmp_path: Path) -> None:
    log = tmp_path / "executed"
    env = {"WOFLO_HOME": str(tmp_path / "home")}
    script = _program(tmp_path, PROGRAM, log=str(log))
    assert run_script(script, env=env).returncode == 0
    _executed(log)
    script.write_text(script.read_text().replace("return i * 10", "return i * 100"))
    result = run_script(script, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("|")[:2] == ["300", "[300, 400, 500]"]
    # load's code changed; combine's did not, but its arguments did
    assert _executed(log) == ["combine 100 200", *[f"load {i}" for i in range(1, 6)]]


def test_a_hit_is_a_completed_run_with_no_attempt(
    cache_home: Path,
    recorder: HookRecorder,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WOFLO_LOG_LEVEL", "info")
    calls: list[int] = []

    @task(cache=True, runner=SequentialTaskRun)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    first = double(4)
    assert (first.get_result(), first.cached, first.attempts) == (8, False, 1)
    assert caching.flush(TIMEOUT)
    recorder.calls.clear()
    for hit in (double(4), double(x=4)):  # (the arguments by name: one key)
        assert hit.state is RunState.COMPLETED
        assert (hit.get_result(), hit.cached, hit.attempts) == (8, True, 0)
    assert calls == [4]
    assert [hook for hook, *_ in recorder.calls] == ["run_created", "run_finished"] * 2
    assert double(5).get_result() == 10
    assert calls == [4, 5]
    assert "task.cached" in capfd.readouterr().err


def test_only_completed_runs_are_stored(cache_home: Path) -> None:
    attempts: list[int] = []

    @task(cache=True, runner=SequentialTaskRun)
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise ConnectionError("the API hung up")
        return x

    assert isinstance(flaky(1).exception(), ConnectionError)
    assert caching.flush(TIMEOUT)
    second = flaky(1)
    assert (second.get_result(), second.cached) == (1, False)
    assert caching.flush(TIMEOUT)
    assert flaky(1).cached
    assert attempts == [1, 1]


def test_every_runner_caches_and_a_multiprocess_hit_needs_no_worker(cache_home: Path) -> None:
    cached_add = add.with_options(cache=True)
    first = cached_add(2, 3)
    assert (first.get_result(timeout=TIMEOUT), first.cached) == (5, False)
    assert caching.flush(TIMEOUT)
    hit = cached_add(2, 3)
    assert not hit.is_running()  # final in the call itself
    assert (hit.get_result(), hit.cached, hit.attempts) == (5, True, 0)
    assert cache.entries(task=cached_add.name)[0]["task"] == cached_add.name


@task(cache=True)
def held_twice(gate: Path) -> int:
    return hold(gate, "held")


@task(cache=True)
def fails_the_first_time(gate: Path) -> str:
    hold(gate, "once")
    marker = gate / "failed once"
    if not marker.exists():
        marker.write_text("")
        raise ValueError("the first time")
    return "the second time"


def test_two_runs_of_one_key_at_once_execute_once(cache_home: Path, gate: Any) -> None:
    first, second = held_twice(gate.path), held_twice(gate.path)
    assert (second.state, second.attempts) == (RunState.PENDING, 0)  # it waits for the first
    gate.release()
    assert first.get_result(timeout=TIMEOUT) == second.get_result(timeout=TIMEOUT)
    assert (first.cached, first.attempts, second.cached, second.attempts) == (False, 1, True, 0)


def test_a_run_waiting_for_one_that_fails_runs_itself(cache_home: Path, gate: Any) -> None:
    first, second = fails_the_first_time(gate.path), fails_the_first_time(gate.path)
    assert (second.state, second.attempts) == (RunState.PENDING, 0)
    gate.release()
    assert isinstance(first.exception(timeout=TIMEOUT), ValueError)
    assert second.get_result(timeout=TIMEOUT) == "the second time"
    assert (second.cached, second.attempts) == (False, 1)
    assert caching.flush(TIMEOUT)
    assert fails_the_first_time(gate.path).cached  # the one that completed was stored


def test_bad_options_fail_at_decoration() -> None:
    def f(x: int) -> int:
        return x

    with pytest.raises(OptionTypeError, match="cache takes True, False or None, not 'yes'"):
        task(cache="yes")(f)
    with pytest.raises(OptionTypeError, match="cache_key"):
        task(cache_key=1)(f)
    for bad in (-1, 0, float("nan"), datetime.timedelta(0)):
        with pytest.raises(OptionValueError, match="cache_expiration takes seconds > 0"):
            task(cache_expiration=bad)(f)
    with pytest.raises(OptionTypeError, match="cache_expiration"):
        task(cache_expiration="1h")(f)
    assert task(cache_expiration=datetime.timedelta(hours=1))(f).options["cache_expiration"] == 3600


def test_an_argument_that_cannot_be_keyed_fails_the_call(cache_home: Path) -> None:
    @task(cache=True, runner=SequentialTaskRun)
    def use(lock: Any, n: int = 0) -> int:
        return n

    with pytest.raises(
        CacheKeyError, match=r"argument 'lock' \(lock\) cannot be pickled.*cache_key"
    ):
        use(threading.Lock())
    keyed = use.with_options(cache_key=lambda n, **_: n)  # (given the arguments by name)
    assert keyed(threading.Lock(), n=3).get_result() == 3
    assert caching.flush(TIMEOUT)
    assert keyed(threading.Lock(), 3).cached
    assert not keyed(threading.Lock()).cached  # (n=0, by its default)
    assert isinstance(CacheKeyError("x"), TypeError)


def test_keys_are_stable_for_equal_arguments_across_processes(tmp_path: Path) -> None:
    script = _program(
        tmp_path,
        """
        from woflo_plugins.cache._key import default_key
        def f(a, b=None): pass
        print(default_key("f", f, ({{"x", "y", "z", "w"}}, {{"b": 1, "a": [1.5, None]}}), {{}}))
        """,
    )
    keys = {
        run_script(script, env={"PYTHONHASHSEED": str(seed)}).stdout.strip() for seed in (1, 2, 3)
    }
    assert len(keys) == 1
    assert len(next(iter(keys))) == 64


def test_expired_entries_are_misses(cache_home: Path) -> None:
    calls: list[int] = []
    short = task(cache_expiration=0.001, runner=SequentialTaskRun, name="short")(
        lambda: calls.append(1) or len(calls)
    )
    assert short().get_result() == 1
    assert caching.flush(TIMEOUT)
    time.sleep(0.01)  # (let the entry's time run out: what is tested is the clock)
    assert (short().get_result(), len(calls)) == (2, 2)


def test_a_corrupt_or_missing_value_is_a_miss_with_a_warning(
    cache_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    calls: list[int] = []
    count = task(cache=True, runner=SequentialTaskRun, name="count")(
        lambda: calls.append(1) or len(calls)
    )
    count()
    assert caching.flush(TIMEOUT)
    [value_file] = (cache_home / "cache" / "values").iterdir()
    value_file.write_bytes(b"\x80\x05not a pickle")
    again = count()
    assert (again.get_result(), again.cached) == (2, False)
    assert "cannot be read" in capfd.readouterr().err
    assert caching.flush(TIMEOUT)
    for entry in (cache_home / "cache" / "values").iterdir():
        entry.unlink()
    assert (count().get_result(), len(calls)) == (3, 3)


def test_a_value_that_cannot_be_pickled_is_not_cached_and_the_run_succeeds(
    cache_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    make = task(cache=True, runner=SequentialTaskRun, name="make_lock")(threading.Lock)
    assert make().state is RunState.COMPLETED
    assert caching.flush(TIMEOUT)
    assert "cannot be pickled" in capfd.readouterr().err
    assert cache.entries(task="make_lock") == []


def test_files_are_private_to_the_user(cache_home: Path) -> None:
    task(cache=True, runner=SequentialTaskRun, name="private")(lambda: 1)()
    assert caching.flush(TIMEOUT)
    root = cache_home / "cache"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "values").stat().st_mode) == 0o700
    for path in [root / "index.sqlite3", *(root / "values").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_least_recently_used_entries_are_evicted(
    cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WOFLO_CACHE_MAX_BYTES", "2500")
    blob = task(cache=True, runner=SequentialTaskRun, name="blob")(
        lambda i: bytes(1000) + bytes([i])
    )
    blob(1)
    blob(2)
    assert caching.flush(TIMEOUT)
    assert blob(1).cached  # 1 is now the most recently used
    blob(3)
    assert caching.flush(TIMEOUT)
    assert len(cache.entries(task="blob")) == 2
    assert blob(1).cached
    assert not blob(2).cached  # evicted


def test_concurrent_programs_never_corrupt_an_entry(tmp_path: Path) -> None:
    script = _program(
        tmp_path,
        """
        from woflo import task
        from woflo.runners import SequentialTaskRun
        big = task(cache=True, runner=SequentialTaskRun)(lambda i: [i] * 200_000)
        for _ in range(3):
            for i in range(5):
                assert big(i).get_result() == [i] * 200_000
        """,
    )
    env = script_env({"WOFLO_HOME": str(tmp_path / "home")})
    programs = [
        subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = [(program.communicate(timeout=120)[1], program.returncode) for program in programs]
    for err, returncode in outcomes:
        assert returncode == 0, err
        assert "cannot" not in err


OPENERS = """
import multiprocessing, os, sys, tempfile

def open_both(home, start):
    os.environ["WOFLO_HOME"] = home
    from woflo import cache, history
    start.wait()
    history.connect().close()
    cache.entries()

context = multiprocessing.get_context("fork")  # (all at once, with woflo imported already)
for _ in range(20):
    start = context.Barrier(6)
    home = tempfile.mkdtemp(dir=sys.argv[1])
    openers = [context.Process(target=open_both, args=(home, start)) for _ in range(6)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join()
        assert opener.exitcode == 0, opener.exitcode
"""


def test_programs_that_start_together_all_open_a_fresh_home(tmp_path: Path) -> None:
    # SQLite refuses a switch to WAL at once ("database is locked", without waiting) to a
    # program that reads the file while another switches it: 6 programs opening a fresh
    # WOFLO_HOME together failed one time in four. Twenty such starts must all succeed.
    script = tmp_path / "openers.py"
    script.write_text(OPENERS)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=script_env({}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_woflo_cache_list_and_clear(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = _program(
        tmp_path,
        """
        from woflo import task
        from woflo.runners import SequentialTaskRun
        task(cache=True, runner=SequentialTaskRun, name="a")(lambda i: i)(1)
        task(cache=True, runner=SequentialTaskRun, name="a")(lambda i: i)(2)
        task(cache=True, runner=SequentialTaskRun, name="b")(lambda: 0)()
        """,
    )
    assert run_script(script, env={"WOFLO_HOME": str(home)}).returncode == 0

    def woflo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "woflo", "cache", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=script_env({"WOFLO_HOME": str(home)}),
        )

    listed = woflo("list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == [
        "KEY",
        "TASK",
        "SIZE",
        "CREATED",
        "EXPIRES",
        "LAST",
        "USED",
    ]
    assert len(listed.stdout.splitlines()) == 4
    rows = json.loads(woflo("list", "--json", "--task", "a").stdout)
    assert {r["task"] for r in rows} == {"a"}
    assert len(rows) == 2
    assert set(rows[0]) >= {"key", "task", "size", "created_at", "expires_at", "used_at"}
    assert woflo("clear", "--task", "a").stdout.strip() == "removed 2 cache entries"
    assert [r["task"] for r in json.loads(woflo("list", "--json").stdout)] == ["b"]
    assert woflo("clear").stdout.strip() == "removed 1 cache entry"
    assert "no cache entries" in woflo("list").stdout
    assert woflo("bogus").returncode == 2
    os.chmod(home / "cache", 0o700)


def test_a_hit_is_the_value_as_it_was_stored_never_the_callers_later_edits(
    cache_home: Path,
) -> None:
    rows = task(cache=True, runner=SequentialTaskRun, name="rows")(lambda n: list(range(n)))
    first = rows(3).get_result()
    first.append("the caller's own edit")
    again = rows(3)  # (from memory, before the store has it, or from the store: alike)
    assert again.cached
    assert again.get_result() == [0, 1, 2]
    assert again.get_result() is not first
    assert caching.flush(TIMEOUT)
    assert rows(3).get_result() == [0, 1, 2]


def test_a_value_file_changed_on_disk_is_a_miss(
    cache_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    greet = task(cache=True, runner=SequentialTaskRun, name="greet")(lambda: "hello world")
    greet()
    assert caching.flush(TIMEOUT)
    [value_file] = (cache_home / "cache" / "values").iterdir()
    value_file.write_bytes(value_file.read_bytes().replace(b"hello", b"HACKD"))
    again = greet()
    assert (again.get_result(), again.cached) == ("hello world", False)
    assert "checksum does not match" in capfd.readouterr().err


def make_scaler(factor: int) -> Any:
    return task(cache=True, runner=SequentialTaskRun, name="scale")(lambda x: x * factor)


def test_what_a_task_closes_over_is_in_its_key_when_it_is_a_plain_value(
    cache_home: Path,
) -> None:
    double, triple = make_scaler(2), make_scaler(3)
    assert double(10).get_result() == 20
    assert caching.flush(TIMEOUT)
    tripled = triple(10)
    assert (tripled.get_result(), tripled.cached) == (30, False)


def test_a_user_key_is_the_tasks_own_and_cache_false_turns_caching_off(
    cache_home: Path,
) -> None:
    def csv_load(path: str) -> str:
        return f"rows of {path}"

    def image_load(path: str) -> str:
        return f"pixels of {path}"

    by_path = {"cache_key": lambda path, **_: path, "runner": SequentialTaskRun, "name": "load"}
    csvs, images = task(**by_path)(csv_load), task(**by_path)(image_load)
    assert csvs("x").get_result() == "rows of x"
    assert caching.flush(TIMEOUT)
    image = images("x")
    assert (image.get_result(), image.cached) == ("pixels of x", False)
    off = csvs.with_options(cache=False)
    assert not off("x").cached
    with pytest.raises(CacheKeyError, match=r"task 'load': its cache_key .* failed, given path"):
        csvs.with_options(cache_key=lambda y: y)("x")


def test_no_expiry_and_no_size_bound_are_said_plainly(
    cache_home: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(OptionValueError, match="cache_expiration takes seconds > 0"):
        task(cache_expiration=float("inf"))(lambda: 1)
    with pytest.raises(OptionValueError, match="cache_expiration"):
        task(cache_expiration=datetime.timedelta.max)(lambda: 1)
    monkeypatch.setenv("WOFLO_CACHE_MAX_BYTES", "inf")
    one = task(cache=True, runner=SequentialTaskRun, name="unbounded")(lambda: 1)
    one()
    assert caching.flush(TIMEOUT)
    assert one().cached
    assert capfd.readouterr().err == ""


def test_hits_count_as_uses_for_eviction_across_programs(tmp_path: Path) -> None:
    script = _program(
        tmp_path,
        """
        import sys
        from woflo import task
        from woflo.runners import SequentialTaskRun
        blob = task(cache=True, runner=SequentialTaskRun, name="blob")(
            lambda k: bytes(1000) + k.encode()
        )
        for k in sys.argv[1:]:
            print(k, blob(k).cached)
        """,
    )
    env = {"WOFLO_HOME": str(tmp_path / "home"), "WOFLO_CACHE_MAX_BYTES": "2500"}
    assert run_script(script, "a", "b", env=env).stdout.split() == ["a", "False", "b", "False"]
    assert run_script(script, "a", env=env).stdout.split() == ["a", "True"]  # a is used
    assert run_script(script, "c", env=env).returncode == 0  # evicts the least used: b
    assert run_script(script, "a", "b", env=env).stdout.split() == ["a", "True", "b", "False"]


def test_clearing_everything_removes_what_the_index_lost(cache_home: Path) -> None:
    one = task(cache=True, runner=SequentialTaskRun, name="orphan")(lambda: 1)
    one()
    assert caching.flush(TIMEOUT)
    (cache_home / "cache" / "index.sqlite3").write_bytes(b"not a database at all" * 100)
    assert cache.clear() == 1
    assert list((cache_home / "cache").glob("values/*")) == []
    assert not one().cached
