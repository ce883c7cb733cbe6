"""Third-party plugins end to end: real distributions built and installed into a virtualenv.

``examples/woflo-threads`` (a runner in the calling process), ``examples/woflo-processpool`` (an
out-of-process runner on ``concurrent.futures``, built on ``woflo.remote``) and
``examples/woflo-audit`` (a hook plugin) are built from their own ``pyproject.toml`` and
installed with pip into a fresh virtual environment that sees this environment's packages
(woflo included) but nothing of the examples: everything the tests then find, they find
through the ``woflo`` entry-point group, as a user's install would.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("third-party")
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    outer = [*site.getsitepackages(), site.getusersitepackages()]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in outer if Path(p).is_dir())
    (Path(purelib) / "_outer_environment.pth").write_text(lines, encoding="utf-8")
    sources = []
    for name in ("woflo-threads", "woflo-processpool", "woflo-audit"):
        shutil.copytree(EXAMPLES / name, root / name)
        sources.append(str(root / name))
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            *sources,
        ],
        check=True,
        cwd=root,
    )
    return env


def _run(
    venv_dir: Path, *args: str, env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_dir / "bin" / "python"), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_runner_is_importable_and_runs(venv: Path, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    script = textwrap.dedent(
        """
        import threading
        from woflo import task
        from woflo.runners import ThreadTaskRun

        @task(runner="threads")
        def where(x):
            return x * 2, threading.current_thread().name

        value, thread = where(21).get_result(timeout=30)
        assert value == 42, value
        assert thread.startswith("woflo-where-"), thread
        assert where.runner is ThreadTaskRun
        print("ok")
        """
    )
    result = _run(venv, "-c", script, env={"WOFLO_AUDIT_FILE": str(audit)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    [line] = audit.read_text().splitlines()  # the audit plugin saw the run, through its hook
    record = json.loads(line)
    assert (record["task"], record["state"], record["attempts"]) == ("where", "completed", 1)


def test_woflo_plugins_lists_them_with_distribution_and_version(venv: Path) -> None:
    result = _run(venv, "-m", "woflo", "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["plugins"]}
    threads, audit = rows["threads"], rows["audit"]
    assert (threads["distribution"], threads["version"]) == ("woflo-threads", "0.1.0")
    assert threads["builtin"] is False
    assert threads["runners"] == ["threads"]
    assert threads["entry_point"] == "woflo_threads"
    assert (audit["distribution"], audit["version"], audit["builtin"]) == (
        "woflo-audit",
        "0.1.0",
        False,
    )
    assert audit["hooks"] == ["woflo_run_finished"]
    assert rows["sequential"]["builtin"] is True

    hooked = _run(venv, "-m", "woflo", "plugins", "--json", "--hook", "woflo_run_finished")
    names = {row["name"] for row in json.loads(hooked.stdout)["plugins"]}
    assert "audit" in names
    assert "threads" not in names

    version = _run(venv, "-m", "woflo", "--version")
    assert "woflo-threads 0.1.0" in version.stdout
    assert "woflo-audit 0.1.0" in version.stdout


@pytest.mark.parametrize("example", ["woflo-threads", "woflo-processpool"])
def test_the_runner_passes_the_conformance_suite(venv: Path, example: str) -> None:
    tests = EXAMPLES / example / "tests" / "test_conformance.py"
    result = _run(
        venv,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-W",
        "error",
        str(tests),
        cwd=tests.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
    assert "failed" not in result.stdout
    assert "skipped" not in result.stdout  # every case applies: retries and timeouts are on


def test_the_out_of_process_runner_is_small_and_uses_only_public_helpers() -> None:
    source = (EXAMPLES / "woflo-processpool" / "woflo_processpool" / "__init__.py").read_text()
    assert len(source.splitlines()) <= 50
    assert "woflo._" not in source
    assert "woflo_plugins" not in source


def test_the_out_of_process_runner_carries_the_run_context_and_logs(
    venv: Path, tmp_path: Path
) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import logging, os
            import structlog
            from woflo import task

            seen = []
            class Keep(logging.Handler):
                def emit(self, record):
                    seen.append(record)

            logging.getLogger("acme").addHandler(Keep())
            logging.getLogger("acme").setLevel(logging.INFO)

            @task(runner="processpool")
            def work(x):
                logging.getLogger("acme").info("working on %s", x)
                return os.getpid(), dict(structlog.contextvars.get_contextvars())

            if __name__ == "__main__":
                run = work(3)
                pid, context = run.get_result(timeout=60)
                assert pid != os.getpid()
                assert context == {"task": "work", "run_id": run.run_id, "attempt": 1}, context
                [record] = [r for r in seen if r.getMessage() == "working on 3"]
                assert (record.process, record.run_id, record.task) == (pid, run.run_id, "work")
                print("ok")
            """
        )
    )
    result = _run(venv, str(script), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_disabling_the_third_party_runner(venv: Path) -> None:
    result = _run(
        venv,
        "-c",
        "from woflo import task\n"
        "try:\n"
        "    task(runner='threads')(print)\n"
        "except ValueError as e:\n"
        "    print(e)\n",
        env={"WOFLO_DISABLE_PLUGINS": "threads"},
    )
    assert result.returncode == 0, result.stderr
    assert "unknown runner 'threads'" in result.stdout
    assert "'sequential'" in result.stdout
