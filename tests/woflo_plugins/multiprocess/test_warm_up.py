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
