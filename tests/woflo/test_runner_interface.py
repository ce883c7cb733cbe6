"""The public runner interface: its names, the deprecated ones, the contracts it documents, and
the rules the core enforces whatever plugins are installed."""

from __future__ import annotations

import ast
import gc
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.woflo import test_run
from woflo import BaseTaskRun, Outcome, RunState, TaskCall, hookimpl, task
from woflo.errors import (
    ArgumentNotPicklable,
    OptionError,
    OptionTypeError,
    OptionValueError,
    TaskStopped,
    UnknownRunner,
    WofloError,
)
from woflo.plugins import PluginSystem
from woflo.runners import SequentialTaskRun
from woflo.testing import add

ROOT = Path(__file__).resolve().parents[2]


class Threaded(test_run.Threaded):
    """test_run's thread runner (each attempt in a thread of its own), under its own name."""

    name = "threaded-interface"


# ---- the deprecated names ----------------------------------------------------------------------


def test_a_runner_implementing_the_old_names_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"implements _start_attempt\(\).*start_attempt"):

        class OldStyle(BaseTaskRun[Any]):
            name = "old-style"

            def _start_attempt(self, call: TaskCall) -> None:
                self._attempt_started(call)
                self._attempt_finished(call, self._execute(call))

    with pytest.warns(DeprecationWarning, match="is deprecated") as caught:
        run = task(runner=OldStyle)(add)(2, 3)
    assert run.get_result(timeout=10) == 5
    messages = [str(w.message) for w in caught]
    assert any("_attempt_started() is deprecated" in m and "report_started" in m for m in messages)
    assert any("_attempt_finished() is deprecated" in m for m in messages)
    assert any("_execute() is deprecated" in m for m in messages)
    # the warning points at the runner's own code, not at woflo's
    assert {Path(w.filename).name for w in caught} == {Path(__file__).name}


@pytest.mark.parametrize(
    ("old", "new"),
    [("_kill_attempt", "kill_attempt"), ("_prepare", "prepare")],
)
def test_each_old_hook_method_maps_to_the_new_one(old: str, new: str) -> None:
    called: list[str] = []

    def old_method(self: Any, *args: Any) -> None:
        called.append(old)

    with pytest.warns(DeprecationWarning, match=rf"implements {old}\(\)"):
        cls = type("Old", (Threaded,), {old: old_method})
    assert getattr(cls, new) is old_method
    run = task(runner=cls)(add)(1, 1)
    run.wait(10)
    if new == "prepare":
        assert called == ["_prepare"]


def test_the_old_classmethod_check_available_is_mapped() -> None:
    def unavailable(cls: Any) -> None:
        raise WofloError("needs the acme package")

    with pytest.warns(DeprecationWarning, match=r"_check_available"):
        cls = type("OldAvail", (Threaded,), {"_check_available": classmethod(unavailable)})
    with pytest.raises(WofloError, match="needs the acme package"):
        task(runner=cls)(add)


# ---- contracts ---------------------------------------------------------------------------------


def test_an_exception_from_start_attempt_is_a_retryable_attempt_failure() -> None:
    class Flaky(Threaded):
        failures = 2

        def start_attempt(self, call: TaskCall) -> None:
            if call.attempt <= self.failures:
                raise ConnectionError(f"no worker for attempt {call.attempt}")
            super().start_attempt(call)

    run = task(runner=Flaky, retries=2)(add)(1, 2)
    assert run.get_result(timeout=10) == 3
    assert run.attempts == 3
    assert [str(e) for e in run.errors] == ["no worker for attempt 1", "no worker for attempt 2"]


def test_a_finish_without_a_start_report_counts_as_started(recorder: Any) -> None:
    class NoStart(BaseTaskRun[Any]):
        name = "no-start"

        def start_attempt(self, call: TaskCall) -> None:
            self.report_finished(call, self.execute(call))

    run = task(runner=NoStart)(add)(2, 2)
    assert run.get_result(timeout=10) == 4
    assert run.attempts == 1
    assert recorder.hooks == ["run_created", "attempt_started", "attempt_finished", "run_finished"]


def test_reporting_from_inside_kill_attempt_is_safe() -> None:
    class KillsAndReports(BaseTaskRun[Any]):
        name = "kills-and-reports"

        def start_attempt(self, call: TaskCall) -> None:
            self.report_started(call)

        def kill_attempt(self, call: TaskCall) -> None:
            self.report_finished(call, Outcome(error=TaskStopped("killed")))

    stopped = task(runner=KillsAndReports)(add)(1, 1)
    assert stopped.stop() is True
    assert stopped.state is RunState.STOPPED
    timed = task(runner=KillsAndReports, timeout=0.05)(add)(1, 1)
    assert timed.wait(10)
    assert timed.state is RunState.TIMED_OUT  # the core turned the stop report into a timeout


def test_prepare_reads_the_arguments_and_fails_the_call_itself(recorder: Any) -> None:
    class Picky(Threaded):
        def prepare(self) -> None:
            if any(isinstance(a, str) for a in (*self.args, *self.kwargs.values())):
                raise ArgumentNotPicklable("strings cannot be sent")

    with pytest.raises(ArgumentNotPicklable, match="strings"):
        task(runner=Picky)(add)("a", b="b")
    assert recorder.runs == []  # no run exists, no hook fired
    assert task(runner=Picky)(add)(1, 2).get_result(timeout=10) == 3


def test_an_option_a_runner_cannot_honour_is_refused_at_decoration() -> None:
    with pytest.raises(OptionValueError, match=r"max_concurrency= is not honoured by runner 'seq"):
        task(runner=SequentialTaskRun, max_concurrency=2)(add)
    with pytest.raises(OptionValueError, match=r"runner 'threaded-interface' \(Threaded\)"):
        task(runner=Threaded, max_concurrency=1)(add)
    t = task(max_concurrency=2)(add)  # the default runner, multiprocess, honours it
    assert t.options["max_concurrency"] == 2
    with pytest.raises(OptionValueError, match="applies to runner 'multiprocess'"):
        t.with_options(runner="sequential")
    assert task(runner=SequentialTaskRun, max_concurrency=None)(add).options  # the default: ok


# ---- the core's rules --------------------------------------------------------------------------


class AlwaysRetry:
    """A third-party retry policy that retries everything, at once."""

    @hookimpl(tryfirst=True)
    def woflo_retry_delay(self) -> float:
        return 0.0


def _interrupt() -> None:
    raise KeyboardInterrupt


def _exit() -> None:
    raise SystemExit(3)


def test_the_core_never_retries_a_ctrl_c_or_an_exit_whatever_the_policy(
    plugins: PluginSystem,
) -> None:
    plugins.add(AlwaysRetry(), name="always-retry")
    for fn, kind in ((_interrupt, KeyboardInterrupt), (_exit, SystemExit)):
        with pytest.raises(kind):
            task(runner=Threaded, retries=5)(fn)().get_result(timeout=10)
    run = task(runner=Threaded, retries=5)(_interrupt)()
    run.wait(10)
    assert run.attempts == 1


def test_the_core_never_retries_a_stop_reported_by_a_runner(plugins: PluginSystem) -> None:
    plugins.add(AlwaysRetry(), name="always-retry")

    class Shuts(BaseTaskRun[Any]):
        name = "shuts"

        def start_attempt(self, call: TaskCall) -> None:
            self.report_finished(call, Outcome(error=TaskStopped("the pool was shut down")))

    run = task(runner=Shuts, retries=5)(add)(1, 1)
    assert run.wait(10)
    assert (run.state, run.attempts) == (RunState.STOPPED, 1)


def test_async_generator_functions_are_refused_at_decoration() -> None:
    async def pages() -> Any:
        yield 1

    with pytest.raises(OptionTypeError, match=r"async generator function.*returns a list"):
        task(pages)


# ---- one error vocabulary ----------------------------------------------------------------------


def test_every_error_woflo_raises_for_bad_input_is_a_woflo_error_and_the_builtin() -> None:
    cases: list[tuple[Any, type[BaseException]]] = [
        (lambda: task(runner="nope")(add), LookupError),
        (lambda: task(runner="nope")(add), ValueError),  # as before 0.2
        (lambda: task(runner=3)(add), TypeError),
        (lambda: task(retries=-1)(add), ValueError),
        (lambda: task(retries="2")(add), TypeError),
        (lambda: task(bogus=1)(add), TypeError),
        (lambda: task(3), TypeError),
        (lambda: task(name="")(add), TypeError),
        (lambda: task(plugins="x")(add), TypeError),
    ]
    for make, builtin in cases:
        with pytest.raises(WofloError) as info:
            make()
        assert isinstance(info.value, builtin), (info.value, builtin)
    with pytest.raises(UnknownRunner):
        task(runner="nope")(add)
    with pytest.raises(
        OptionError,
        match=r"^task 'add': retries takes a whole number >= 0, or inf \(no limit\), not -1$",
    ):
        task(add, retries=-1)


def test_every_public_error_is_importable_from_woflo_errors() -> None:
    import woflo.errors
    import woflo_plugins.multiprocess

    assert woflo_plugins.multiprocess.PoolBroken is woflo.errors.PoolBroken
    for name in woflo.errors.__all__:
        error = getattr(woflo.errors, name)
        assert issubclass(error, Exception)
        assert name in ("RemoteTraceback", "WofloError") or issubclass(error, WofloError), name


# ---- the core's shape --------------------------------------------------------------------------


def _parse(path: Path) -> ast.Module:
    """``ast.parse`` with the garbage collector held off. On CPython 3.11 a collection during
    it can run Python (a finalizer) and so let another thread in, whose own parse (3.11's
    traceback carets parse a line: a run that failed in an earlier test's thread) breaks the
    AST builder's shared depth count: "SystemError: AST constructor recursion depth
    mismatch" (python/cpython#106905; 1 run of tests/woflo in 4 once)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    finally:
        if enabled:
            gc.enable()


def _runtime_imports(path: Path, package: str) -> set[str]:
    """The ``woflo`` modules ``path`` imports when it runs (``if TYPE_CHECKING:`` left out)."""
    tree = _parse(path)
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m.split(".")[0] == package}


def test_the_core_has_no_import_cycle() -> None:
    """Every import counts, function-level ones included: only ``TYPE_CHECKING`` is left out."""
    modules = {}
    for path in (ROOT / "woflo").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {
        name: {m for m in _runtime_imports(path, "woflo") if m in modules and m != name}
        for name, path in modules.items()
    }
    graph.pop("woflo", None)  # the package re-exports; nothing in the core imports "woflo" itself
    for edges in graph.values():
        edges.discard("woflo")

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*trail, nxt]
                if nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
        return None

    cycles = [c for name in sorted(graph) if (c := cycle_from(name))]
    assert not cycles, f"import cycles in the core: {cycles[0]}"


def _own_private_names(tree: ast.AST) -> set[str]:
    """The private names a module defines itself: its functions, methods, class attributes,
    slots and the attributes its methods set."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {n for n in names if n.startswith("_")}


def test_no_module_reaches_into_another_modules_private_attributes() -> None:
    """``x._name`` where ``_name`` is not the module's own is private access across modules:
    the core and the plugins use each other's public names only."""
    allowed = {
        "os._exit",  # the stdlib's: leave a forked child or a process killed by Ctrl-C at once
        "subprocess._args_from_interpreter_flags",  # the zygote runs with the caller's flags
        "threading._register_atexit",  # the wait at exit, before executors shut down
        "threading._threading_atexits",
        "cloudpickle.cloudpickle._code_reduce",  # keeps file names of code sent by value
    }
    offenders = []
    for folder in ("woflo", "woflo_plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = _parse(path)
            own = _own_private_names(tree)
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and node.attr not in own
                    and ast.unparse(node) not in allowed
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "\n".join(offenders)


def test_no_plugin_imports_another_plugins_private_module() -> None:
    for path in (ROOT / "woflo_plugins").rglob("*.py"):
        plugin = path.relative_to(ROOT / "woflo_plugins").parts[0].removesuffix(".py")
        for module in _runtime_imports(path, "woflo_plugins"):
            parts = module.split(".")
            if len(parts) > 1 and parts[1] != plugin:
                assert not any(p.startswith("_") for p in parts[2:]), (path, module)


def test_core_modules_stay_small() -> None:
    for path in [*(ROOT / "woflo").rglob("*.py"), *(ROOT / "woflo_plugins").rglob("*.py")]:
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 450, f"{path.relative_to(ROOT)} has {lines} lines: split it at its seams"


# ---- the wait at exit --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_retry_due_during_the_wait_at_exit_runs_on_an_executor_based_runner(
    tmp_path: Path,
) -> None:
    """concurrent.futures shuts its executors down before atexit handlers: woflo's wait comes
    before that, so a runner built on an executor can still start the retry."""
    out = tmp_path / "out"
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import concurrent.futures
            from woflo import BaseTaskRun, task
            from woflo.testing import fail_once_then_record

            executor = concurrent.futures.ThreadPoolExecutor(2)

            class OnExecutor(BaseTaskRun):
                name = "on-executor"

                def start_attempt(self, call):
                    def work():
                        self.report_started(call)
                        self.report_finished(call, self.execute(call))

                    executor.submit(work)

            t = task(runner=OnExecutor, retries=1, retry_sleep_time=0.3)(fail_once_then_record)
            t({str(tmp_path / "counter")!r}, {str(out)!r})
            """
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "cannot schedule new futures" not in result.stderr
    assert out.read_text() == "2"


def test_a_retry_that_cannot_be_scheduled_fails_the_run_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from woflo import _scheduler

    def refuse(*args: Any) -> Any:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(_scheduler.scheduler, "call_later", refuse)
    run = task(runner=Threaded, retries=1)(_fails)()
    assert run.wait(10)
    assert run.state is RunState.FAILED
    [note] = run.exception().__notes__  # type: ignore[union-attr]
    assert "could not schedule the retry of attempt 1" in note
    assert "can't create new thread" in note


def _fails() -> None:
    raise ConnectionError("down")


@pytest.mark.parametrize("cls", [Outcome, TaskCall])
def test_outcomes_and_calls_are_frozen_dataclasses_built_from_every_field(cls: Any) -> None:
    # (their __init__ is written by hand, for speed: it must take and set every field)
    import dataclasses

    fields = dataclasses.fields(cls)
    assert list(inspect.signature(cls).parameters) == [f.name for f in fields]
    values = {f.name: object() for f in fields}
    made = cls(**values)
    assert {name: getattr(made, name) for name in values} == values
    assert made == dataclasses.replace(made)
    assert made == cls(*values.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, None)
    missing = dataclasses.MISSING
    required = [f.name for f in fields if f.default is missing and f.default_factory is missing]
    defaults = cls(*[values[name] for name in required])
    for f in fields:  # (the defaults the dataclass declares: a new dict for each factory)
        if f.default_factory is not missing:
            assert getattr(defaults, f.name) == f.default_factory()
            another = cls(*[values[name] for name in required])
            assert getattr(defaults, f.name) is not getattr(another, f.name)
        elif f.default is not missing:
            assert getattr(defaults, f.name) == f.default
