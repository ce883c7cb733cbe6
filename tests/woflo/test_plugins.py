"""The plugin manager: entry-point discovery, errors that name the culprit, disabling, hookspecs.

Third-party discovery goes through a real distribution (a ``*.dist-info`` directory with
``entry_points.txt``, put on ``sys.path``), found by ``importlib.metadata`` like any installed one.
"""

from __future__ import annotations

import dataclasses
import gc
import inspect
import sys
import weakref
from typing import Any

import pytest

from tests.woflo.test_run import on_a_plain_pluggy_manager
from woflo import BaseTaskRun, Outcome, RunState, hookimpl, hookspecs, task
from woflo.errors import PluginError
from woflo.plugins import PluginSystem, get_plugin_system, set_plugin_system
from woflo.runners import SequentialTaskRun

BUILTINS = {
    "sequential",
    "multiprocess",
    "retries",
    "timeouts",
    "logging",
    "history",
    "cache",
    "otel",
}

GOOD_PLUGIN = """
    from woflo import BaseTaskRun, TaskOption, hookimpl

    class AcmeTaskRun(BaseTaskRun):
        name = "acme"
        blocking = True

        def start_attempt(self, call):
            self.report_finished(call, self.execute(call))

    @hookimpl
    def woflo_add_runners():
        return [AcmeTaskRun]

    @hookimpl
    def woflo_add_options():
        return [TaskOption("memoize", default=False)]
"""


# ---- the built-ins --------------------------------------------------------------------------


def test_builtins_come_from_the_entry_point_group(plugins: PluginSystem) -> None:
    from importlib.metadata import version

    assert set(plugins.infos) >= BUILTINS
    for name in BUILTINS:
        info = plugins.infos[name]
        assert info.builtin
        assert info.distribution == "woflo"
        assert info.version == version("woflo")
        assert info.module == f"woflo_plugins.{name}"
        assert info.entry_point == f"woflo_plugins.{name}"
    assert plugins.infos["sequential"].runners == ("sequential",)
    assert plugins.infos["retries"].options[:2] == ("retries", "retry_sleep_time")
    assert "woflo_retry_delay" in plugins.infos["retries"].hooks
    assert plugins.runners["sequential"] is SequentialTaskRun


def test_the_process_wide_system_is_loaded_on_first_use() -> None:
    set_plugin_system(None)  # the fixture restores the previous one
    system = get_plugin_system()
    assert system is get_plugin_system()
    assert set(system.infos) >= BUILTINS


def test_empty_system_has_only_the_core() -> None:
    system = PluginSystem.empty()
    assert system.infos == {}
    assert system.runners == {}
    assert system.options == {}
    assert system.default_runner() is None
    set_plugin_system(system)
    with pytest.raises(LookupError, match="no default runner"):
        task(lambda: 1)
    with pytest.raises(TypeError, match="unknown task option 'retries'"):
        task(retries=1)


def test_disabled_plugins_are_not_loaded() -> None:
    system = PluginSystem.from_entry_points(disabled=["retries", "logging"])
    assert "retries" not in system.infos
    assert "logging" not in system.infos
    assert "sequential" in system.infos
    assert "retries" not in system.options


def test_blocking_the_retries_plugin_disables_the_retries_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WOFLO_DISABLE_PLUGINS", " retries , ")
    system = PluginSystem.from_entry_points()
    assert "retries" not in system.infos
    set_plugin_system(system)
    with pytest.raises(TypeError, match="unknown task option 'retries'") as info:
        task(retries=2)
    assert "retries" not in str(info.value).split("known options:")[1]
    failures: list[int] = []

    @task(runner=SequentialTaskRun)
    def fail() -> None:
        failures.append(1)
        raise ValueError

    assert fail().state is RunState.FAILED
    assert failures == [1]


# ---- decisions ------------------------------------------------------------------------------


def test_a_plugins_retry_decision_wins_over_the_builtin(plugins: PluginSystem) -> None:
    asked: list[tuple[int, str]] = []

    class AlwaysOnce:
        @hookimpl
        def woflo_retry_delay(self, run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> Any:
            asked.append((attempt, type(outcome.error).__name__))
            return 0.0 if attempt == 1 else False

    plugins.add(AlwaysOnce(), name="always-once")

    @task(runner=SequentialTaskRun)  # retries=0: the built-in alone would not retry
    def fail() -> None:
        raise KeyError("k")

    run = fail()
    assert run.attempts == 2
    assert asked == [(1, "KeyError"), (2, "KeyError")]

    @task(runner=SequentialTaskRun, retries=5)  # the plugin's False wins over retries=5
    def fail_again() -> None:
        raise KeyError("k")

    assert fail_again().attempts == 2


def test_a_plugin_without_an_opinion_leaves_the_builtin_deciding(plugins: PluginSystem) -> None:
    class NoOpinion:
        @hookimpl
        def woflo_retry_delay(self) -> None:
            return None

    plugins.add(NoOpinion(), name="no-opinion")
    run = task(runner=SequentialTaskRun, retries=2)(_raise)()
    assert run.attempts == 3


def _raise() -> None:
    raise ValueError("x")


def test_a_plugin_can_choose_the_default_runner(plugins: PluginSystem) -> None:
    class Choose:
        @hookimpl(tryfirst=True)
        def woflo_default_runner(self) -> str:
            return "sequential"

    plugins.add(Choose(), name="choose")
    assert task(lambda: 1).runner is SequentialTaskRun


# ---- third-party plugins from a real distribution -------------------------------------------


def test_a_third_party_plugin_is_discovered(make_distribution: Any) -> None:
    make_distribution(
        "acme-woflo",
        "1.2",
        entry_points={"acme": "acme_woflo_good"},
        modules={"acme_woflo_good": GOOD_PLUGIN},
    )
    system = PluginSystem.from_entry_points()
    info = system.infos["acme"]
    assert info.distribution == "acme-woflo"
    assert info.version == "1.2"
    assert not info.builtin
    assert info.entry_point == "acme_woflo_good"
    assert info.runners == ("acme",)
    assert info.options == ("memoize",)
    assert set(system.infos) >= BUILTINS | {"acme"}
    set_plugin_system(system)
    from woflo.runners import AcmeTaskRun  # type: ignore[attr-defined]

    t = task(runner="acme", memoize=True)(lambda: "hi")
    assert t.runner is AcmeTaskRun
    assert t().get_result() == "hi"


def _assert_names_the_culprit(message: str, entry_point: str) -> None:
    assert "'broken'" in message  # the entry point's name
    assert entry_point in message  # what it points at
    assert "acme-broken" in message  # the distribution
    assert "WOFLO_DISABLE_PLUGINS=broken" in message  # how to run without it


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("import acme_dependency_that_is_missing\n", r"failed to import: ModuleNotFoundError"),
        ("raise RuntimeError('half-installed')\n", r"failed to import: RuntimeError: half-in"),
        (
            """
            from woflo import hookimpl

            @hookimpl
            def woflo_run_created(run, colour):
                pass
            """,
            r"(?s)not a valid woflo plugin.*woflo_run_created.*colour",
        ),
        (
            """
            from woflo import hookimpl

            @hookimpl
            def woflo_run_finishd(run):
                pass
            """,
            r"(?s)implements a hook woflo does not have.*woflo_run_finishd.*Known hooks: .*"
            r"woflo_run_finished",
        ),
        (
            """
            from woflo import hookimpl

            @hookimpl
            def woflo_add_runners():
                return [object]
            """,
            r"woflo_add_runners returned <class 'object'>",
        ),
        (
            """
            from woflo import TaskOption, hookimpl

            @hookimpl
            def woflo_add_options():
                return [TaskOption("retries")]
            """,
            r"task option 'retries' from plugin 'broken' .* already declared by plugin 'retries'",
        ),
        (
            """
            from woflo import hookimpl

            @hookimpl
            def woflo_add_options():
                raise LookupError("no config")
            """,
            r"woflo_add_options raised LookupError: no config",
        ),
    ],
    ids=[
        "import-error",
        "raises-at-import",
        "bad-signature",
        "misspelt-hook",
        "bad-runner",
        "option-clash",
        "registration-raises",
    ],
)
def test_a_broken_plugin_gives_one_clear_error(
    make_distribution: Any, monkeypatch: pytest.MonkeyPatch, source: str, match: str
) -> None:
    module = f"acme_broken_{abs(hash(source))}"
    make_distribution(
        "acme-broken", "0.3", entry_points={"broken": module}, modules={module: source}
    )
    with pytest.raises(PluginError, match=match) as info:
        PluginSystem.from_entry_points()
    _assert_names_the_culprit(str(info.value), module)
    assert "0.3" in str(info.value) or "acme-broken" in str(info.value)

    # the error says how to run without it, and that works
    monkeypatch.setenv("WOFLO_DISABLE_PLUGINS", "broken")
    sys.modules.pop(module, None)
    system = PluginSystem.from_entry_points()
    assert "broken" not in system.infos
    assert set(system.infos) >= BUILTINS


def test_a_disabled_plugin_is_not_even_imported(
    make_distribution: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_distribution(
        "acme-broken",
        entry_points={"broken": "acme_never_imported"},
        modules={"acme_never_imported": "raise SystemExit('imported!')\n"},
    )
    monkeypatch.setenv("WOFLO_DISABLE_PLUGINS", "other,broken")
    PluginSystem.from_entry_points()
    assert "acme_never_imported" not in sys.modules


def test_two_distributions_claiming_one_name(make_distribution: Any) -> None:
    make_distribution(
        "acme-one", entry_points={"dup": "acme_dup_one"}, modules={"acme_dup_one": ""}
    )
    make_distribution(
        "acme-two", entry_points={"dup": "acme_dup_two"}, modules={"acme_dup_two": ""}
    )
    with pytest.raises(PluginError, match=r"two woflo plugins are named 'dup'.*acme-(one|two)"):
        PluginSystem.from_entry_points()


def test_two_distributions_registering_one_runner_name(make_distribution: Any) -> None:
    source = """
        from woflo import BaseTaskRun, hookimpl

        class {cls}(BaseTaskRun):
            name = "fast"

        @hookimpl
        def woflo_add_runners():
            return [{cls}]
        """
    make_distribution(
        "acme-fast-one",
        "1.1",
        entry_points={"fast-one": "acme_fast_one"},
        modules={"acme_fast_one": source.format(cls="FastOneTaskRun")},
    )
    make_distribution(
        "acme-fast-two",
        "2.2",
        entry_points={"fast-two": "acme_fast_two"},
        modules={"acme_fast_two": source.format(cls="FastTwoTaskRun")},
    )
    with pytest.raises(PluginError, match=r"runner 'fast'") as info:
        PluginSystem.from_entry_points()
    message = str(info.value)
    assert "acme-fast-one" in message
    assert "acme-fast-two" in message
    assert "WOFLO_DISABLE_PLUGINS=fast-" in message


def test_a_broken_per_task_plugin_is_reported_at_decoration() -> None:
    class Misspelt:
        @hookimpl
        def woflo_attempt_finishd(self) -> None:
            pass

    with pytest.raises(PluginError, match=r"woflo_attempt_finishd.*Fix or remove the plugin"):
        task(runner=SequentialTaskRun, plugins=[Misspelt()])(lambda: 1)


# ---- plugins sitting a task out (woflo_idle_hooks) -------------------------------------------


class SitsOutQuiet:
    """Retries every failure, and says ``woflo_run_finished`` and ``woflo_retry_delay`` have
    nothing to do for the task named "quiet"."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.finished: list[str] = []
        self.answer: Any = None  # (an answer to give instead)

    @hookimpl
    def woflo_idle_hooks(self, task: Any) -> Any:
        self.asked.append(task.name)
        if self.answer is not None:
            return self.answer
        return ["woflo_run_finished", "woflo_retry_delay"] if task.name == "quiet" else None

    @hookimpl
    def woflo_run_finished(self, run: BaseTaskRun[Any]) -> None:
        self.finished.append(run.task.name)

    @hookimpl
    def woflo_retry_delay(self, attempt: int) -> float | None:
        return 0.0 if attempt < 2 else None


def _fails_once() -> Any:
    calls: list[int] = []

    def fn() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first")
        return len(calls)

    return fn


@pytest.mark.parametrize("timeout", [None, 60], ids=["no-wrapper", "timeouts-wrapper-on"])
def test_a_plugin_sits_out_the_tasks_it_names_idle_hooks_for(
    plugins: PluginSystem, timeout: float | None
) -> None:
    """Its hooks named idle are not called for that task's runs (with a wrapper of another
    plugin on the same decision too: then through pluggy's call, less the idle plugin); for
    another task they are."""
    watch = SitsOutQuiet()
    plugins.add(watch, name="sits-out")
    loud = task(runner=SequentialTaskRun, name="loud", timeout=timeout)(_fails_once())
    quiet = task(runner=SequentialTaskRun, name="quiet", timeout=timeout)(_fails_once())
    assert loud().get_result() == 2  # retried: its retry_delay answered
    run = quiet()
    assert run.state is RunState.FAILED
    assert run.attempts == 1  # asked no one: no retry
    assert watch.finished == ["loud"]


@pytest.mark.parametrize("manager", ["woflo's", "pluggy's own"])
def test_idle_hooks_are_asked_once_per_task_and_again_after_plugins_change(
    plugins: PluginSystem, manager: str
) -> None:
    """On woflo's manager (which counts what is registered) and on a plain pluggy one (whose
    plugins are compared instead) alike."""
    watch = SitsOutQuiet()
    plugins.add(watch, name="sits-out")
    system = plugins if manager == "woflo's" else on_a_plain_pluggy_manager(plugins)
    previous = set_plugin_system(system)
    try:
        quiet = task(runner=SequentialTaskRun, name="quiet")(lambda: 1)
        assert watch.asked == ["quiet"]  # at decoration
        for _ in range(3):
            quiet()
        assert watch.asked == ["quiet"]
        system.pm.register(SitsOutQuiet(), name="another")
        quiet()
        assert watch.asked == ["quiet", "quiet"]  # the next call planned again, and asked
        quiet()
        assert watch.asked == ["quiet", "quiet"]
        assert watch.finished == []
    finally:
        set_plugin_system(previous)


def test_a_plugin_object_that_cannot_be_hashed_may_not_sit_a_task_out(
    plugins: PluginSystem,
) -> None:
    """Its hooks are left out of a call with a wrapper by plugin object (pluggy's
    ``subset_hook_caller``): refused at decoration, rather than called after all."""

    @dataclasses.dataclass  # (eq: no __hash__)
    class Unhashable:
        @hookimpl
        def woflo_idle_hooks(self) -> Any:
            return ["woflo_run_finished"]

        @hookimpl
        def woflo_run_finished(self) -> None:
            pass

    with pytest.raises(PluginError, match=r"plugin object 'Unhashable' cannot be hashed"):
        task(runner=SequentialTaskRun, plugins=[Unhashable()])(lambda: 1)


def test_the_facade_notifications_take_the_hook_arguments_positionally() -> None:
    """As inspect shows them; a wrong call is the caller's error, never a plugin's."""
    t = task(runner=SequentialTaskRun)(lambda: 1)
    run = t()
    errors = list(run.hook_errors)
    parameters = inspect.signature(t.hooks.attempt_finished).parameters.values()
    assert [p.name for p in parameters] == ["run", "attempt", "outcome"]
    assert {p.kind for p in parameters} == {inspect.Parameter.POSITIONAL_ONLY}
    with pytest.raises(TypeError, match=r"run_finished\(\) got an unexpected keyword"):
        t.hooks.run_finished(run=run)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'attempt'"):
        t.hooks.attempt_started(run)  # type: ignore[call-arg]
    assert run.hook_errors == errors


def test_a_task_no_longer_used_is_freed_at_once() -> None:
    """Its hooks refer back to it weakly: no cycle for the garbage collector to find."""
    t = task(runner=SequentialTaskRun)(lambda: 1)
    gc.disable()
    try:
        other = t.with_options(name="other")
        other()
        freed = weakref.ref(other)
        del other
        assert freed() is None
    finally:
        gc.enable()


class Answers:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    @hookimpl
    def woflo_idle_hooks(self) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    @hookimpl
    def woflo_run_finished(self) -> None:
        pass


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ("woflo_run_finished", r"returned 'woflo_run_finished'; expected a list of hook names"),
        (
            ["woflo_execute_attempt"],
            r"named 'woflo_execute_attempt': it may name only the run"
            r" hooks it implements \(woflo_run_finished\)",
        ),
        (["woflo_run_created"], r"named 'woflo_run_created'"),
        (42, r"returned 42; expected a list"),
        (RuntimeError("boom"), r"raised RuntimeError\('boom'\)"),
    ],
)
def test_a_wrong_idle_hooks_answer_fails_the_decoration(
    plugins: PluginSystem, answer: Any, says: str
) -> None:
    with pytest.raises(
        PluginError, match=r"woflo_idle_hooks of plugin .*\[plugins\]\[0\]. " + says
    ):
        task(runner=SequentialTaskRun, plugins=[Answers(answer)])(lambda: 1)
    plugins.add(Answers(answer), name="answers")  # (process-wide, named)
    with pytest.raises(PluginError, match="of plugin 'answers'"):
        task(runner=SequentialTaskRun)(lambda: 1)


def test_a_wrong_idle_hooks_answer_asked_again_is_logged_and_every_hook_called(
    plugins: PluginSystem, caplog: pytest.LogCaptureFixture
) -> None:
    watch = SitsOutQuiet()
    plugins.add(watch, name="sits-out")
    quiet = task(runner=SequentialTaskRun, name="quiet")(lambda: 1)
    quiet()
    assert watch.finished == []
    watch.answer = ["woflo_attempt_started"]  # (not a hook it implements)
    plugins.add(Answers(None), name="answers")  # (a change: the next call asks again)
    with caplog.at_level("ERROR", logger="woflo.plugins"):
        assert quiet().get_result() == 1
    assert watch.finished == ["quiet"]
    assert "woflo_idle_hooks of plugin 'sits-out' named 'woflo_attempt_started'" in caplog.text


def test_the_cache_and_timeouts_plugins_sit_out_tasks_that_do_not_use_them(
    plugins: PluginSystem,
) -> None:
    def idle(**options: Any) -> set[str]:
        t = task(runner=SequentialTaskRun, **options)(lambda: 1)
        return {name for names in plugins.pm.hook.woflo_idle_hooks(task=t) for name in names}

    assert idle() == {
        "woflo_cached_outcome",
        "woflo_run_finished",
        "woflo_attempt_deadline",
        "woflo_retry_delay",
    }
    assert idle(cache=True, timeout=5) == set()
    assert idle(total_timeout=5, cache_expiration=60) == set()


# ---- the hook specifications and the facade -------------------------------------------------

REGISTRATION = {
    "woflo_add_runners",
    "woflo_add_options",
    "woflo_default_runner",
    "woflo_idle_hooks",  # (asked per task, by the facade itself)
}


def _specs() -> dict[str, Any]:
    return {name: fn for name, fn in vars(hookspecs).items() if name.startswith("woflo_")}


def test_every_hook_is_documented() -> None:
    specs = _specs()
    assert len(specs) >= 10
    for name, spec in specs.items():
        doc = inspect.getdoc(spec)
        assert doc, f"{name} has no docstring"
        assert "Fires" in doc, f"{name}: say when it fires"
        assert "process" in doc, f"{name}: say in which process it fires"
        for param in inspect.signature(spec).parameters:
            assert f":param {param}:" in doc, f"{name}: document {param}"
        if inspect.signature(spec).return_annotation not in ("None", None):
            assert ":return:" in doc, f"{name}: say what a return value means"
        if getattr(spec, "woflo_spec", {}).get("firstresult"):
            assert "First non-``None`` result wins" in " ".join(doc.split()), name


def test_the_facade_matches_the_specs(plugins: PluginSystem) -> None:
    hooks = type(plugins.hooks)  # the typed facade the core and runners call hooks through
    specs = _specs()
    called = set(specs) - REGISTRATION
    assert called, "no lifecycle, decision or execution hooks?"
    for name in called:
        method = getattr(hooks, name.removeprefix("woflo_"), None)
        assert method is not None, f"Hooks has no method for {name}"
        facade = list(inspect.signature(method).parameters)[1:]  # without self
        spec = list(inspect.signature(specs[name]).parameters)
        assert facade == spec, f"Hooks.{name.removeprefix('woflo_')}{facade} != {name}{spec}"


def test_the_plugin_manager_knows_every_spec(plugins: PluginSystem) -> None:
    assert plugins.hook_names() == sorted(_specs())
    for name in _specs():
        assert getattr(plugins.pm.hook, name).has_spec()


_HELPER = """
from woflo import hookimpl

@hookimpl
def woflo_run_created(run):
    pass
"""

_MODULE_PLUGIN = """
import functools
import os
from os import getpid
from woflo import hookimpl
from woflo_fastpath_helper import woflo_run_created  # a marked function, re-exported

@hookimpl(specname="woflo_run_finished")
def on_finished(run):
    pass

@hookimpl
def woflo_add_options():
    return []

def _started(run, attempt):
    pass

@hookimpl
@functools.cache
def woflo_add_runners():  # (a descriptor, no function: pluggy 1.5 and 1.6 take it, 1.7 not)
    return []

def _marked_elsewhere():
    return None

def woflo_default_runner():  # unmarked, its __func__ marked: pluggy 1.7 reads that
    return None

woflo_default_runner.__func__ = hookimpl(_marked_elsewhere)
del _marked_elsewhere

not_a_hook = functools.partial(_started)  # marked, and no function: no implementation
not_a_hook.woflo_impl = {}
woflo_attempt_started = staticmethod(hookimpl(_started))
del _started

class Marked:
    @hookimpl
    def woflo_retry_scheduled(self, run, attempt, outcome, delay):
        pass

woflo_retry_scheduled = Marked()  # a marked object that is no function: no implementation
woflo_retry_scheduled.woflo_impl = {}
CONSTANT = 3
"""


def test_a_module_plugin_registers_what_pluggy_itself_finds(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """woflo's manager passes a module's names that hold no function by at once (a worker's
    start registers every plugin): what it registers must be what pluggy's own finds."""
    import pluggy

    (tmp_path / "woflo_fastpath_helper.py").write_text(_HELPER)
    (tmp_path / "woflo_fastpath_plugin.py").write_text(_MODULE_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import woflo_fastpath_plugin as module

    def found(pm: pluggy.PluginManager) -> set[tuple[str, object]]:
        pm.register(module, name="fastpath")
        return {
            (caller.name, impl.function)
            for caller in pm.get_hookcallers(module) or ()
            for impl in caller.get_hookimpls()
            if impl.plugin is module
        }

    plain = pluggy.PluginManager("woflo")
    plain.add_hookspecs(hookspecs)
    ours = found(PluginSystem.empty().pm)
    assert ours == found(plain)
    # (the staticmethod, the descriptor and the __func__ one: each as the pluggy installed)
    assert {name for name, _ in ours} >= {
        "woflo_run_created",
        "woflo_run_finished",
        "woflo_add_options",
    }
