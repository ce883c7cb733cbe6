"""The pool starts when a script's main module decorates a task (``BaseTaskRun.warm_up``), as
``multiprocessing.Pool()`` starts its workers when made: its zygote and one worker, so the
first call finds them starting or ready. A module that is only imported starts nothing, nor
does a bad setting fail there."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.woflo_plugins.multiprocess._support import run_script


def output_of(
    tmp_path: Path, source: str, env: dict[str, str] | None = None, flags: tuple[str, ...] = ()
) -> list[str]:
    """The lines a script of ``source`` printed; it must have exited cleanly and quietly."""
    script = tmp_path / "script.py"
    script.write_text(source)
    proc = run_script(script, env=env, flags=flags)
    assert (proc.returncode, proc.stderr) == (0, "")
    return proc.stdout.splitlines()


WAIT_FOR_A_WORKER = """
import os, time
import woflo_plugins.multiprocess as mp
deadline = time.monotonic() + 20
while (mp.status() is None or not mp.status().workers) and time.monotonic() < deadline:
    time.sleep(0.005)
status = mp.status()
print("zygote up before any call:", status is not None and status.zygote_pid is not None)
print("workers before any call:", [w.run_id for w in status.workers])
"""


def test_a_task_decorated_in_the_main_module_starts_the_pool(tmp_path: Path) -> None:
    assert output_of(
        tmp_path,
        "from woflo import task\n\n@task\ndef double(x):\n    return 2 * x\n"
        + WAIT_FOR_A_WORKER
        + "run = double(21)\n"
        + "print(run.get_result(timeout=20))\n"
        + "print('ran on the warm worker:', run.attempt_pid == status.workers[0].pid)\n",
    ) == [
        "zygote up before any call: True",
        "workers before any call: [None]",
        "42",
        "ran on the warm worker: True",
    ]


ZYGOTES = """
import os
def zygotes(thread=None):  # the zygote processes this program's threads (or one) started
    me = os.getpid()
    threads = [thread] if thread else os.listdir(f"/proc/{me}/task")
    found = []
    for tid in threads:
        try:
            with open(f"/proc/{me}/task/{tid}/children") as listing:
                children = listing.read().split()
        except OSError:  # (a thread that ended since)
            continue
        for child in children:
            try:
                with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                    if b"_zygote" in cmdline.read():
                        found.append(int(child))
            except OSError:
                pass
    return found
"""


def test_the_decoration_has_started_the_zygote_when_it_returns(tmp_path: Path) -> None:
    """The main thread starts the zygote as it decorates (its interpreter boots while the
    program goes on to its first call), and the pool adopts it: no second one."""
    assert output_of(
        tmp_path,
        ZYGOTES
        + "from woflo import task\n\n@task\ndef double(x):\n    return 2 * x\n\n"
        + "early = zygotes(thread=os.getpid())\n"  # (the main thread's own children)
        + "print('zygotes started by the decoration:', len(early))\n"
        + "print(double(21).get_result(timeout=20))\n"
        + "import woflo_plugins.multiprocess as mp\n"
        + "print('the pool adopted it:', [mp.status().zygote_pid] == early == zygotes())\n",
    ) == [
        "zygotes started by the decoration: 1",
        "42",
        "the pool adopted it: True",
    ]


def test_decorations_while_the_pool_starts_start_no_second_zygote(tmp_path: Path) -> None:
    """A script decorating many tasks: those decorated while the first pool starts (after it
    adopted the zygote, before it was known as the pool) started a second zygote that no pool
    adopted, left running until the exit (a ResourceWarning in dev mode; 10 runs in 20)."""
    for _ in range(3):
        assert output_of(
            tmp_path,
            ZYGOTES
            + "from woflo import task\n\ndef double(x):\n    return 2 * x\n\n"
            + "tasks = [task(double, name=f'double{i}') for i in range(300)]\n"
            + "print(tasks[0](21).get_result(timeout=20))\n"
            + "import woflo_plugins.multiprocess as mp\n"
            + "print('one zygote:', zygotes() == [mp.status().zygote_pid])\n",
            flags=("-X", "dev"),
        ) == ["42", "one zygote: True"]


def test_a_decoration_while_another_thread_makes_the_pool_starts_no_second_zygote(
    tmp_path: Path,
) -> None:
    """The pool made by another thread's call took no early zygote (none was started yet):
    the main thread's decoration meanwhile must not start one that no pool adopts (9 rounds in
    60 did, before: it stayed, and the pool after the next shutdown took it, stale)."""
    assert output_of(
        tmp_path,
        ZYGOTES
        + "import sys, threading, time\nfrom woflo import task\n"
        + "import woflo_plugins.multiprocess as mp\n"
        + "sys.setswitchinterval(1e-6)\n\n@task\ndef double(x):\n    return 2 * x\n\n"
        + "double(1).get_result(timeout=20)\nextra = 0\n"
        + "for _ in range(25):\n"
        + "    mp.shutdown()\n"
        + "    thread = threading.Thread(target=lambda: double(2).wait(20))\n"
        + "    thread.start()\n"
        + "    other = task(lambda x: x, name='other')\n"
        + "    thread.join()\n"
        + "    status = mp.status()\n"
        + "    extra += any(z != status.zygote_pid for z in zygotes())\n"
        + "print('rounds with a second zygote:', extra)\n",
    ) == ["rounds with a second zygote: 0"]


def test_a_child_forked_right_after_a_decoration_runs_tasks(tmp_path: Path) -> None:
    """The pool's modules are imported by the decorating thread: a child forked while the
    warm-up thread imported them copied a module's import lock held by a thread it does not
    have, and its first call waited for it for ever (2 runs in 4 of this script)."""
    for _ in range(4):  # (the fork has to come while the warm-up thread imports: 2 in 4 did)
        assert output_of(
            tmp_path,
            "import os, select, signal, warnings\n"
            + "warnings.simplefilter('ignore', DeprecationWarning)  # (fork() with threads)\n"
            + "from woflo import task\n\n@task\ndef double(x):\n    return 2 * x\n\n"
            + "pid = os.fork()\n"
            + "if pid == 0:\n"
            + "    print('child:', double(21).get_result(timeout=20), flush=True)\n"
            + "    os._exit(0)\n"
            + "ended = select.select([os.pidfd_open(pid)], [], [], 10)[0]\n"
            + "if not ended:\n"
            + "    print('the child hangs', flush=True)\n"
            + "    os.kill(pid, signal.SIGKILL)\n"
            + "os.waitpid(pid, 0)\n"
            + "print('parent:', double(21).get_result(timeout=20))\n",
        ) == ["child: 42", "parent: 42"]


def test_a_task_decorated_in_a_thread_that_ends_still_runs(tmp_path: Path) -> None:
    """Linux's parent-death signal follows the thread that started the zygote: one started
    by a short-lived thread that decorated a task would die with it, and the pool with it."""
    assert output_of(
        tmp_path,
        "import threading\nfrom woflo import task\n\ndef double(x):\n    return 2 * x\n\n"
        + "def decorate():\n    global double_task, status\n    double_task = task(double)\n"
        + textwrap.indent(WAIT_FOR_A_WORKER, "    ")
        + "thread = threading.Thread(target=decorate)\nthread.start()\nthread.join()\n"
        + "import woflo_plugins.multiprocess as mp\n"
        + "print(double_task(21).get_result(timeout=20))\n"
        + "print('same zygote:', mp.status().zygote_pid == status.zygote_pid)\n",
    ) == [
        "zygote up before any call: True",
        "workers before any call: [None]",
        "42",
        "same zygote: True",
    ]


def test_a_task_in_an_imported_module_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "lib.py").write_text(
        "from woflo import task\n\n@task\ndef double(x):\n    return 2 * x\n"
    )
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import threading
            import lib
            import woflo_plugins.multiprocess as mp
            print(mp.status(), [t.name for t in threading.enumerate() if "woflo" in t.name])
            print(lib.double(21).get_result(timeout=20))
            """
        )
    )
    proc = run_script(script)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == ["None []", "42"]


def test_a_bad_setting_fails_the_first_call_not_the_decoration(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            from woflo import task
            from woflo.errors import OptionValueError

            @task
            def double(x):
                return 2 * x

            print("decorated")
            try:
                double(21)
            except OptionValueError as exc:
                print("call:", exc)
            """
        )
    )
    proc = run_script(script, env={"WOFLO_MAX_WORKERS": "many"})
    assert (proc.returncode, proc.stderr) == (0, "")
    lines = proc.stdout.splitlines()
    assert lines[0] == "decorated"
    assert lines[1].startswith("call: ")
    assert "WOFLO_MAX_WORKERS" in lines[1]
    assert "'many'" in lines[1]


FORKING_WHILE_THE_POOL_STARTS = """
import os, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # (3.12+: fork() with threads running)
from woflo import task

@task
def double(x):
    return 2 * x

# the decoration started the pool in the background; fork now, as multiprocessing's "fork"
# start method does, into children that stay (each holds what it inherited until released)
release, hold = os.pipe()
children = []
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        os.close(hold)
        os.read(release, 1)
        os._exit(0)
    children.append(pid)
try:
    print(double(21).get_result(timeout=15))
finally:
    os.close(hold)  # (the children end)
    for pid in children:
        os.waitpid(pid, 0)
"""


def test_a_program_forking_while_the_pool_starts_still_gets_its_runs(tmp_path: Path) -> None:
    """A plain fork() in the program while the zygote starts (a ``multiprocessing.Pool()``
    made right after decorating a task) must not leave the start waiting forever: the fork
    copies the pipe on which ``subprocess`` waits for the zygote's exec. The pool holds such
    forks back for the few milliseconds of the start."""
    script = tmp_path / "script.py"
    script.write_text(FORKING_WHILE_THE_POOL_STARTS)
    for _ in range(3):
        proc = run_script(script, "60")
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "42\n", "")
