"""The pool starts when a script's main module decorates a task (``BaseTaskRun.warm_up``), as
``multiprocessing.Pool()`` starts its workers when made: its zygote and one worker, so the
first call finds them starting or ready. A module that is only imported starts nothing, nor
does a bad setting fail there."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.woflo_plugins.multiprocess._support import run_script

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
    script = tmp_path / "script.py"
    script.write_text(
        "from woflo import task\n\n@task\ndef double(x):\n    return 2 * x\n"
        + WAIT_FOR_A_WORKER
        + "run = double(21)\n"
        + "print(run.get_result(timeout=20))\n"
        + "print('ran on the warm worker:', run.attempt_pid == status.workers[0].pid)\n"
    )
    proc = run_script(script)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == [
        "zygote up before any call: True",
        "workers before any call: [None]",
        "42",
        "ran on the warm worker: True",
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
