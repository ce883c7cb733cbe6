"""The ``@task`` decorator and the :class:`Task` it returns.

Owned here: checking what a task is given at decoration (the runner, the options, per-task
plugins), starting a run when it is called, and how a task pickles (by reference when it is
importable where it runs, else by value). The run itself is :mod:`woflo._run`'s.
"""

from __future__ import annotations

import functools
import os
import types
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

from woflo._compose import map_runs
from woflo._hooks import Hooks
from woflo._logroute import is_dedicated_worker
from woflo._rules import check_not_loading
from woflo._run import BaseTaskRun, start_run
from woflo._types import CORE_OPTIONS
from woflo._upstream import RunGroup
from woflo.errors import OptionTypeError, OptionValueError, UnknownRunner
from woflo.options import option_error
from woflo.plugins import PluginSystem, get_plugin_system

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["CORE_OPTIONS", "Task", "task"]


class Task(Generic[P, R]):
    """A function decorated with ``@task``: calling it starts a run and returns its handle.

    It keeps the function's name, docstring and signature; ``.fn`` is the plain function.
    """

    fn: Callable[P, R]
    name: str
    runner: type[BaseTaskRun[R]]
    options: Mapping[str, Any]
    plugins: tuple[object, ...]
    hooks: Hooks
    """The hooks its runs call: :attr:`plugin_system`'s, less those its plugins name idle for
    it (``woflo_idle_hooks``)."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        runner: type[BaseTaskRun[Any]] | str | None = None,
        name: str | None = None,
        plugins: Sequence[object] = (),
        **options: Any,
    ) -> None:
        if isinstance(fn, Task):
            raise OptionTypeError(f"{fn!r} is already a task; use .with_options() to change it")
        if not callable(fn):
            raise OptionTypeError(f"@task decorates a function (or other callable), not {fn!r}")
        _refuse_async_generator(fn)
        self.fn = fn
        self.name = _check_name(name, fn)
        if isinstance(plugins, str | bytes) or not isinstance(plugins, Sequence):
            raise OptionTypeError(
                f"plugins= takes a list of plugin objects or modules, not {plugins!r}"
            )
        self.plugins = tuple(plugins)
        system = get_plugin_system()
        if self.plugins:
            system = system.derive(self.plugins, owner=f"task {self.name!r}")
        self._system: PluginSystem = system
        self.runner = _resolve_runner(runner, system, self.name)
        self.runner.check_available()
        if _in_main_module():
            try:
                self.runner.warm_up()
            except Exception:  # a warm-up is a head start only: the first call does it too
                pass
        self._runner_arg = runner
        self.options = types.MappingProxyType(
            _check_options(options, system, f"task {self.name!r}", self.runner)
        )
        self._given = dict(options)
        functools.update_wrapper(self, fn)
        self.hooks = system.hooks.for_task(self)

    @property
    def plugin_system(self) -> PluginSystem:
        """The plugins this task's runs use: the process-wide ones, plus its own ``plugins=``.

        ``plugin_system.hooks`` calls their hooks (runners use it through
        :meth:`~woflo.BaseTaskRun.execute`).
        """
        return self._system

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> BaseTaskRun[R]:
        """Start a run of the task with these arguments and return it."""
        check_not_loading(self.name)
        return start_run(self.runner(self, args, kwargs))

    def map(self, *iterables: Any, **kwargs: Any) -> RunGroup[R]:
        """Start one run per item of the iterables, zipped (``task.map([1, 2], [3, 4])`` calls
        ``task(1, 3)`` and ``task(2, 4)``); keyword arguments are iterables too. Wrap a value
        in :class:`woflo.unmapped` to pass it to every run; items may be runs (each run then
        waits for its own). Runs queue on the runner as usual calls do.

        :return: the runs, as a :class:`~woflo.RunGroup` (itself a valid argument: the list
            of its values).
        :raises woflo.errors.OptionValueError: for iterables of different lengths.
        """
        return map_runs(self, iterables, kwargs)

    def with_options(self, **changes: Any) -> Task[P, R]:
        """A new task with the same function and these options changed (validated again)."""
        current: dict[str, Any] = {
            "runner": self._runner_arg,
            "name": self.name,
            "plugins": self.plugins,
            **self._given,
        }
        return Task(self.fn, **{**current, **changes})

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        """Bind like a function, so a task defined in a class body works as a method."""
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __repr__(self) -> str:
        return f"<Task {self.name!r} runner={self.runner.name!r}>"

    def __reduce__(self) -> str | tuple[Any, ...]:
        module = getattr(self.fn, "__module__", None)
        qualname = getattr(self.fn, "__qualname__", "")
        # a spawn/forkserver child of the program runs its script as "__mp_main__": by value too
        if module and module not in ("__main__", "__mp_main__") and "<locals>" not in qualname:
            import sys

            target: Any = sys.modules.get(module)
            for part in qualname.split("."):
                target = getattr(target, part, None)
            if target is self:  # importable where it runs: pickle by reference
                return (_lookup, (module, qualname))
        token = self.__dict__.get("_token")
        if token is None:
            token = self.__dict__.setdefault("_token", os.urandom(8))
        options = self._system.options
        given = {
            name: value
            for name, value in self._given.items()
            if not (name in options and options[name].caller_only)
        }
        return (_rebuild, (token, self.fn, self._runner_arg, self.name, self.plugins, given))


def _lookup(module: str, qualname: str) -> Task[..., Any]:
    import importlib

    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]


_rebuilt: weakref.WeakValueDictionary[bytes, Task[..., Any]] = weakref.WeakValueDictionary()


def _rebuild(
    token: bytes,
    fn: Callable[..., Any],
    runner: Any,
    name: str,
    plugins: tuple[object, ...],
    given: dict[str, Any],
) -> Task[..., Any]:
    """Re-create a task sent by value; once per process (options are validated once)."""
    rebuilt = _rebuilt.get(token)
    if rebuilt is None:
        rebuilt = Task(fn, runner=runner, name=name, plugins=plugins, **given)
        _rebuilt[token] = rebuilt
    return rebuilt


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    runner: type[BaseTaskRun[Any]] | str | None = None,
    name: str | None = None,
    plugins: Sequence[object] = (),
    **options: Any,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(fn: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Make a function a task: calling it starts a run and returns a :class:`BaseTaskRun`.

    Use bare (``@task``) or with options (``@task(retries=2, retry_sleep_time=5)``). The core
    owns ``runner`` (a runner class or registered name; default: the default runner), ``name``
    (for logs; default: the function's qualified name) and ``plugins`` (plugins for this task's
    runs only); plugins declare the others. Options are checked here, at decoration time.
    """
    if fn is not None:
        return Task(fn, **options)

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return Task(fn, **options)

    # check the options now, so a bad one fails at the decorator line even before it is applied
    # (with per-task plugins, which may declare options of their own, Task() checks them)
    if options.get("plugins"):
        return decorate
    _check_options(
        {k: v for k, v in options.items() if k not in CORE_OPTIONS},
        get_plugin_system(),
        "@task(...)",
    )
    return decorate


def _check_name(name: object, fn: Callable[..., Any]) -> str:
    if name is None:
        return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    if not isinstance(name, str) or not name:
        raise OptionTypeError(f"name= takes a non-empty string, not {name!r}")
    return name


def _in_main_module() -> bool:
    """Whether the code making this task is the program's main module (outside this module's
    own frames), in a process that is not one of woflo's workers."""
    if is_dedicated_worker():
        return False
    import inspect

    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return frame is not None and frame.f_globals.get("__name__") == "__main__"


def _refuse_async_generator(fn: Callable[..., Any]) -> None:
    import inspect

    target = getattr(fn, "__func__", fn)
    if inspect.isasyncgenfunction(target):
        raise OptionTypeError(
            f"@task cannot run {getattr(fn, '__qualname__', fn)!r}: it is an async generator "
            "function, whose call returns an async iterator, not a result; make it an "
            "'async def' that returns a list"
        )


def _resolve_runner(runner: object, system: PluginSystem, task_name: str) -> type[BaseTaskRun[Any]]:
    registered = ", ".join(repr(n) for n in sorted(system.runners)) or "none"
    if runner is None:
        default = system.default_runner()
        if default is None or default not in system.runners:
            raise UnknownRunner(
                f"no default runner for task {task_name!r}: registered runners are {registered}; "
                "pass runner= or enable a runner plugin"
            )
        return system.runners[default]
    if isinstance(runner, str):
        try:
            return system.runners[runner]
        except KeyError:
            raise UnknownRunner(
                f"unknown runner {runner!r} for task {task_name!r}; "
                f"registered runners: {registered}"
            ) from None
    if isinstance(runner, type) and issubclass(runner, BaseTaskRun) and runner is not BaseTaskRun:
        return runner
    raise OptionTypeError(
        f"runner= takes a woflo.BaseTaskRun subclass or a registered runner name "
        f"({registered}), not {runner!r}"
    )


def _check_options(
    given: Mapping[str, Any],
    system: PluginSystem,
    task_name: str,
    runner: type[BaseTaskRun[Any]] | None = None,
) -> dict[str, Any]:
    unknown = sorted(set(given) - set(system.options))
    if unknown:
        known = ", ".join(sorted([*CORE_OPTIONS, *system.options]))
        raise OptionTypeError(
            f"unknown task option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} for {task_name}; known options: {known}"
        )
    values = {}
    for name, option in system.options.items():
        if name not in given:
            values[name] = option.default
            continue
        value = given[name]
        if option.validate is not None:
            try:
                value = option.validate(value)
            except (TypeError, ValueError) as exc:
                named = option_error(name, given[name], exc)
                raise type(named)(f"{task_name}: {named}") from named.__cause__
        if (
            runner is not None
            and option.runners is not None
            and runner.name not in option.runners
            and value != option.default
        ):
            raise OptionValueError(
                f"{task_name}: {name}= is not honoured by runner {runner.name!r} "
                f"({runner.__qualname__}); it applies to runner"
                f"{'s' if len(option.runners) > 1 else ''} "
                f"{', '.join(map(repr, option.runners))}. Remove it, or choose one of those"
            )
        values[name] = value
    return values
