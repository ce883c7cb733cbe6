"""``@task``: both forms, option validation at decoration time, wrapping, ``with_options``."""

from __future__ import annotations

import inspect
import math

import pytest

from woflo import BaseTaskRun, Task, TaskCall, TaskOption, hookimpl, task
from woflo.plugins import PluginSystem
from woflo.runners import SequentialTaskRun


def add(x: int, y: int = 1, *, scale: float = 1.0) -> float:
    """Add two numbers, then scale."""
    return (x + y) * scale


# ---- the two forms --------------------------------------------------------------------------


def test_bare_decorator_makes_a_task_with_the_default_runner(plugins: PluginSystem) -> None:
    @task
    def f() -> int:
        return 1

    assert isinstance(f, Task)
    default = plugins.default_runner()
    assert default is not None
    assert f.runner is plugins.runners[default]
    assert f.options["retries"] == 0
    assert f.options["retry_sleep_time"] == 0.0


def test_decorator_with_options() -> None:
    @task(runner=SequentialTaskRun, retries=2, retry_sleep_time=5)
    def g() -> int:
        return 1

    assert isinstance(g, Task)
    assert g.runner is SequentialTaskRun
    assert g.options["retries"] == 2
    assert g.options["retry_sleep_time"] == 5.0
    assert isinstance(g.options["retry_sleep_time"], float)  # normalised by the validator
    assert g().get_result() == 1


def test_runner_by_registered_name() -> None:
    t = task(runner="sequential")(add)
    assert t.runner is SequentialTaskRun
    assert t(1, 2).get_result() == 3


def test_name_option() -> None:
    assert task(add).name == "add"
    assert task(name="adder")(add).name == "adder"
    with pytest.raises(TypeError, match="name="):
        task(name="")(add)
    with pytest.raises(TypeError, match="name="):
        task(name=3)(add)


def test_options_are_read_only() -> None:
    t = task(runner=SequentialTaskRun, retries=1)(add)
    with pytest.raises(TypeError):
        t.options["retries"] = 5  # type: ignore[index]


# ---- validation at decoration time ----------------------------------------------------------


def test_unknown_option_names_the_known_ones() -> None:
    with pytest.raises(TypeError, match="unknown task option 'retry'") as info:
        task(retry=2)  # fails at the decorator line, before it is applied
    message = str(info.value)
    for known in ("retries", "retry_sleep_time", "runner", "name", "plugins"):
        assert known in message


def test_unknown_option_when_applied_directly() -> None:
    with pytest.raises(TypeError, match=r"known options: .*retries"):
        task(runner=SequentialTaskRun, memoize=True)(add)
    with pytest.raises(TypeError, match="'memoize', 'ttl'"):
        Task(add, runner=SequentialTaskRun, memoize=True, ttl=3)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (
            {"retries": -1},
            ValueError,
            r"retries takes a whole number >= 0, or inf \(no limit\), not -1$",
        ),
        (
            {"retries": "3"},
            TypeError,
            r"retries takes a whole number >= 0, or inf \(no limit\), not '3'$",
        ),
        (
            {"retries": True},
            TypeError,
            r"retries takes a whole number >= 0, or inf \(no limit\), not True$",
        ),
        (
            {"retries": 1.5},
            TypeError,
            r"retries takes a whole number >= 0, or inf \(no limit\), not 1.5$",
        ),
        ({"retry_sleep_time": -2}, ValueError, r"retry_sleep_time takes seconds .*>= 0.*, not -2$"),
        (
            {"retry_sleep_time": math.inf},
            ValueError,
            r"retry_sleep_time takes .*finite.*, not inf$",
        ),
        ({"retry_sleep_time": math.nan}, ValueError, r"retry_sleep_time takes .*, not nan$"),
        ({"retry_sleep_time": "1"}, TypeError, r"retry_sleep_time takes seconds .*, not '1'$"),
        ({"retry_sleep_time": False}, TypeError, r"retry_sleep_time takes .*, not False$"),
    ],
)
def test_bad_option_values(options: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        task(**options)  # the decorator line itself
    with pytest.raises(error, match=match):
        task(add, runner=SequentialTaskRun, **options)


@pytest.mark.parametrize("runner", [object, int, BaseTaskRun, add, 3])
def test_runner_must_be_a_run_class(runner: object) -> None:
    with pytest.raises(
        TypeError, match=r"runner= takes a woflo.BaseTaskRun subclass.*'sequential'"
    ):
        task(runner=runner)(add)


def test_unknown_runner_name_lists_the_registered_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown runner 'nope'.*registered runners: .*'sequential'"
    ):
        task(runner="nope")(add)


def test_plugins_option_must_be_a_list() -> None:
    with pytest.raises(TypeError, match="plugins= takes a list"):
        task(runner=SequentialTaskRun, plugins="retries")(add)


def test_task_decorates_callables_only() -> None:
    with pytest.raises(TypeError, match="decorates a function"):
        task(42)  # type: ignore[call-overload]
    t = task(runner=SequentialTaskRun)(add)
    with pytest.raises(TypeError, match="already a task"):
        task(t)


def test_runner_defined_outside_any_plugin_is_accepted() -> None:
    class Inline(BaseTaskRun[object]):
        name = "inline"
        blocking = True

        def start_attempt(self, call: TaskCall) -> None:
            self.report_finished(call, self.execute(call))

    t = task(runner=Inline)(add)
    run = t(2, 3)
    assert isinstance(run, Inline)
    assert run.get_result() == 5


# ---- wrapping -------------------------------------------------------------------------------


def test_keeps_name_docstring_and_signature() -> None:
    t = task(runner=SequentialTaskRun)(add)
    assert t.__name__ == "add"
    assert t.__qualname__ == "add"
    assert t.__doc__ == "Add two numbers, then scale."
    assert t.__module__ == __name__
    assert inspect.signature(t) == inspect.signature(add)
    assert t.fn is add
    assert t.fn(1, 2) == 3  # the plain function, no run
    assert "add" in repr(t)


def test_call_passes_arguments() -> None:
    t = task(runner=SequentialTaskRun)(add)
    assert t(1, 2, scale=10).get_result() == 30
    assert t(x=4).get_result() == 5


def test_a_task_in_a_class_body_binds_as_a_method() -> None:
    class Loader:
        def __init__(self, base: int) -> None:
            self.base = base

        @task(runner=SequentialTaskRun)
        def load(self, x: int) -> int:
            return self.base + x

    assert isinstance(Loader.load, Task)
    run = Loader(10).load(5)
    assert run.get_result() == 15
    assert run.args[1] == 5


# ---- with_options ---------------------------------------------------------------------------


def test_with_options_returns_a_new_task() -> None:
    t = task(runner=SequentialTaskRun, retries=1, name="adder")(add)
    t2 = t.with_options(retries=3, retry_sleep_time=0.5)
    assert t2 is not t
    assert isinstance(t2, Task)
    assert t2.fn is t.fn
    assert t2.options["retries"] == 3
    assert t2.options["retry_sleep_time"] == 0.5
    assert t2.name == "adder"  # unchanged options carry over
    assert t2.runner is SequentialTaskRun
    assert t.options["retries"] == 1  # the original is untouched
    assert t.options["retry_sleep_time"] == 0.0
    assert t2.__name__ == "add"
    assert inspect.signature(t2) == inspect.signature(add)
    assert t.with_options(name="other").name == "other"


def test_with_options_validates_again() -> None:
    t = task(runner=SequentialTaskRun)(add)
    with pytest.raises(
        ValueError, match=r"retries takes a whole number >= 0, or inf \(no limit\), not -1"
    ):
        t.with_options(retries=-1)
    with pytest.raises(TypeError, match="unknown task option 'bogus'"):
        t.with_options(bogus=1)
    with pytest.raises(ValueError, match="unknown runner 'nope'"):
        t.with_options(runner="nope")


# ---- options contributed by plugins ---------------------------------------------------------


class MemoPlugin:
    """A third-party-style plugin declaring a ``memoize=`` option."""

    @hookimpl
    def woflo_add_options(self) -> list[TaskOption]:
        def check(value: object) -> bool:
            if not isinstance(value, bool):
                raise TypeError(f"expected True or False, got {type(value).__name__}")
            return value

        return [TaskOption("memoize", default=False, validate=check, help="cache results")]


def test_an_option_declared_by_a_plugin(plugins: PluginSystem) -> None:
    plugins.add(MemoPlugin(), name="memoize")
    t = task(runner=SequentialTaskRun, memoize=True)(add)
    assert t.options["memoize"] is True
    assert task(runner=SequentialTaskRun)(add).options["memoize"] is False
    with pytest.raises(TypeError, match=r"memoize='yes'.*got str"):
        task(memoize="yes")
    assert plugins.infos["memoize"].options == ("memoize",)


def test_an_option_declared_by_a_per_task_plugin() -> None:
    @task(runner=SequentialTaskRun, plugins=[MemoPlugin()], memoize=True)
    def f() -> int:
        return 1

    assert f.options["memoize"] is True
    assert f().get_result() == 1
    with pytest.raises(TypeError, match="unknown task option 'memoize'"):
        task(runner=SequentialTaskRun)(add).with_options(memoize=True)
