"""The hook facade: one typed method per hook, so the core never calls ``pm.hook.x(**kw)``.

Owned here: how each family of hooks is called and what a failing implementation does.
Lifecycle notifications call each implementation on its own and report a failure on the run
(:func:`report_hook_error`); decisions are answered as pluggy's call would (in its order, the
first answer of a ``firstresult`` hook) and count a failure as "no opinion"; they are called
directly unless an implementation is a wrapper (pluggy's call then); execution wraps the task's
call in the new-style wrappers, driven here as pluggy would (pluggy's call for an old-style
``hookwrapper``), and turns any error into an outcome.
Building the plugin manager is :mod:`woflo.plugins`' business; using the answers is the run's.
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Callable, Mapping
from types import FunctionType, MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from woflo._idle import ask_idle
from woflo._types import Outcome, TaskCall
from woflo._upstream import RunLike
from woflo._wrappers import wrapped_call
from woflo.errors import PluginError
from woflo.hookspecs import RUN_HOOKS

if TYPE_CHECKING:
    from woflo._run import BaseTaskRun


def report_hook_error(run: BaseTaskRun[Any], where: str, error: BaseException) -> None:
    """Keep ``error`` in ``run.hook_errors`` and log it on ``woflo.plugins``; the run goes on."""
    run.hook_errors.append(error)
    import logging  # only when a hook failed: ``import woflo`` does not import logging

    logging.getLogger("woflo.plugins").error(
        "%s raised during run %s of task %r; the run goes on",
        where,
        run.run_id,
        run.task.name,
        exc_info=error,
    )


class PluginManager(pluggy.PluginManager):
    """pluggy's plugin manager, counting the changes to what is registered: the hook facade
    plans its calls once per change, not once per call."""

    changes: int = 0
    """Bumped after every registration, removal or new specification."""

    def register(self, plugin: object, name: str | None = None) -> str | None:
        try:
            return super().register(plugin, name)
        finally:
            self.changes += 1

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        try:
            return super().unregister(plugin, name)
        finally:
            self.changes += 1

    def add_hookspecs(self, module_or_class: Any) -> None:
        try:
            super().add_hookspecs(module_or_class)
        finally:
            self.changes += 1

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        # A module plugin's names are mostly what it imported: pluggy looks each one up with
        # ``inspect.getattr_static`` (about 10 µs a name: 3.6 of the 5.4 ms that registering
        # woflo's own plugins took, in each worker's start too). What no pluggy version takes
        # for an implementation is passed by here at once: a module's value that is a class,
        # or whose type has no ``__get__`` (a module, a constant, a marker object, a partial:
        # neither a function nor a descriptor), and a plain function with neither pluggy's
        # marker nor a ``__func__``. Every other name is pluggy's to judge.
        if type(plugin) is ModuleType:
            value = plugin.__dict__.get(name, _ABSENT)
            if value is not _ABSENT:
                kind = type(value)
                if kind is FunctionType:
                    if not hasattr(value, self._marker) and not hasattr(value, "__func__"):
                        return None
                elif issubclass(kind, type) or not hasattr(kind, "__get__"):
                    return None
        return super().parse_hookimpl_opts(plugin, name)

    @property
    def _marker(self) -> str:
        return self.project_name + "_impl"  # (what pluggy's HookimplMarker sets on a function)


_ABSENT = object()


_Entry = tuple[list[Any], list[Any], Any, bool]
_F = TypeVar("_F", bound=Callable[..., None])


class _Uncounted:
    """Stands for a plain pluggy manager, which counts nothing: its ``changes`` (below 0) is
    never the count of any plans, so :meth:`Hooks._entry` compares implementations instead."""

    changes = -2  # (and the plans start at -1: no match before the first count either)


def _notifier(typed: _F) -> _F:
    """The facade's method firing the lifecycle hook ``typed`` names (its arguments the
    hook's, positional only: ``inspect`` shows them so): each implementation is
    called on its own (newest registered first, as pluggy does), a failure reported on the
    run (the first argument) and the next one called. The plan is looked up here, inline, and
    the arguments taken as they come: these are the calls made most often (accepting keywords
    too cost 2.4k instructions a sequential run, 1.8%, by callgrind)."""
    name = sys.intern(f"woflo_{typed.__name__}")
    signature = inspect.signature(typed)
    arity = len(signature.parameters) - 1  # (without self)

    def notify(self: Hooks, *args: Any) -> None:
        if len(args) != arity:  # (the stub says what is missing or too much)
            typed(self, *args)
        count, plans = self._plans
        entry = plans.get(name) if count == self._counter.changes else None
        for function, picks, impl in (entry or self._entry(name))[1]:
            try:
                if picks is None:  # (the common case: it takes every argument)
                    function(*args)
                else:
                    function(*[args[i] for i in picks])
            except Exception as exc:
                report_hook_error(args[0], f"{name} of plugin {impl.plugin_name!r}", exc)

    notify.__name__ = typed.__name__
    notify.__qualname__ = typed.__qualname__
    notify.__doc__ = typed.__doc__
    notify.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(kind=p.POSITIONAL_ONLY) for p in signature.parameters.values()]
    )
    return notify  # type: ignore[return-value]


class Hooks:
    """Typed calls of the hooks of one plugin manager."""

    __slots__ = ("_counter", "_idle", "_plans", "_pm", "_relay", "_task")

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm
        self._relay = pm.hook
        self._counter: Any = pm if isinstance(pm, PluginManager) else _Uncounted()
        self._plans: tuple[int, dict[str, _Entry]] = (-1, {})
        self._task: weakref.ref[Any] | None = None  # (the task these hooks are for, if any)
        self._idle: tuple[object, dict[str, frozenset[str]]] = (None, {})

    def for_task(self, task: Any) -> Hooks:
        """These hooks as ``task``'s runs call them: without the implementations its plugins
        name in ``woflo_idle_hooks``. Asks them now.

        :raises woflo.errors.PluginError: for an answer that is not a list of the plugin's own
            run hooks (or an implementation that raises).
        """
        hooks = Hooks(self._pm)
        hooks._task = weakref.ref(task)  # (no cycle: a task is freed as soon as it is unused)
        hooks._idle = (self._registered(), ask_idle(self._relay, task, strict=True))
        return hooks

    def _registered(self) -> object:
        """What tells whether plugins were registered or removed since: woflo's count, or
        the plugin objects of a manager that does not count."""
        changes = self._counter.changes
        return changes if changes >= 0 else frozenset(map(id, self._pm.get_plugins()))

    def _idle_now(self) -> dict[str, frozenset[str]]:
        """The task's idle hooks by plugin name, asked again once plugins were registered or
        removed since they were asked."""
        registered = self._registered()
        seen, idle = self._idle
        task = self._task() if self._task is not None else None
        if seen != registered and task is not None:
            idle = ask_idle(self._relay, task, strict=False)
            self._idle = (registered, idle)
        return idle

    # ---- lifecycle notifications (each one call: see _notifier) ----------------------------

    @_notifier
    def run_created(self, run: BaseTaskRun[Any]) -> None:
        """Fire ``woflo_run_created``."""

    @_notifier
    def attempt_started(self, run: BaseTaskRun[Any], attempt: int) -> None:
        """Fire ``woflo_attempt_started``."""

    @_notifier
    def attempt_finished(self, run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> None:
        """Fire ``woflo_attempt_finished``."""

    @_notifier
    def retry_scheduled(
        self, run: BaseTaskRun[Any], attempt: int, outcome: Outcome, delay: float
    ) -> None:
        """Fire ``woflo_retry_scheduled``."""

    @_notifier
    def run_finished(self, run: BaseTaskRun[Any]) -> None:
        """Fire ``woflo_run_finished``."""

    # ---- decisions ---------------------------------------------------------------------------

    def _entry(self, name: str) -> _Entry:
        """Hook ``name``'s implementations, how to call them (less those idle for the task,
        for a task's hooks), pluggy's call of them when one is a wrapper (else ``None``) and
        whether one is an old-style ``hookwrapper``: made again once plugins were registered
        or removed since (counted by woflo's :class:`PluginManager`; another manager's
        implementations are compared at every call). The callers above look their plan up
        first, and come here when it is not made yet for the current count."""
        caller = getattr(self._relay, name)
        changes = self._counter.changes
        if changes >= 0:  # (woflo's manager: the plans hold until the count moves)
            count, plans = self._plans  # (one read: the count and the plans made for it)
            if count != changes:
                plans = {}
                self._plans = (changes, plans)
            entry = plans.get(name)
            if entry is not None:
                return entry
            impls = caller.get_hookimpls()  # (read after the count: a change meanwhile is
            # counted after it, and plans again at the next call)
        else:
            plans = self._plans[1]
            impls = caller.get_hookimpls()
            entry = plans.get(name)
            if entry is not None and entry[0] == impls:
                return entry
        kept = impls
        if self._task is not None and name in RUN_HOOKS:  # (a task's: less what sits out)
            idle = self._idle_now()
            if idle:
                kept = [impl for impl in impls if name not in idle.get(impl.plugin_name, ())]
        wrapped = None  # (or the pluggy call that does, less the idle: a wrapper is in it)
        if any(impl.hookwrapper or impl.wrapper for impl in kept):
            idle_plugins = [impl.plugin for impl in impls if impl not in kept]  # (hashable:
            # ask_idle keeps no answer of a plugin object that is not)
            wrapped = self._pm.subset_hook_caller(name, idle_plugins) if idle_plugins else caller
        old_style = any(impl.hookwrapper for impl in kept)
        entry = (impls, _plan(caller, kept), wrapped, old_style)
        plans[name] = entry  # (into the plans of the count read, never a newer one's)
        return entry

    def _planned(self, name: str) -> _Entry:
        """Hook ``name``'s plan for the current count of changes (made now if it is not)."""
        count, plans = self._plans
        entry = plans.get(name) if count == self._counter.changes else None
        return entry or self._entry(name)

    def _decide(self, entry: _Entry, args: tuple[Any, ...], first: bool) -> Any:
        """What pluggy's call of a decision hook answers, from its plan ``entry`` (``first``:
        it is ``firstresult``): each implementation's answer but ``None``, in pluggy's order;
        an exception is raised. Called here, without pluggy's machinery per call, unless an
        implementation is a wrapper."""
        _impls, plan, wrapped, _old = entry
        if wrapped is not None:
            return wrapped(**dict(zip(wrapped.spec.argnames, args, strict=True)))
        answers = []
        for function, picks, _impl in plan:
            answer = function(*args) if picks is None else function(*[args[i] for i in picks])
            if answer is not None:
                if first:
                    return answer
                answers.append(answer)
        return None if first else answers

    def attempt_context(self, run: BaseTaskRun[Any], attempt: int) -> Mapping[str, Any]:
        """The merged ``woflo_attempt_context`` of every plugin (empty when none gives any);
        a failing implementation is reported and left out."""
        count, plans = self._plans  # (:meth:`_planned`, inlined: a call for every attempt)
        entry = plans.get("woflo_attempt_context") if count == self._counter.changes else None
        plan = (entry or self._entry("woflo_attempt_context"))[1]
        if not plan:
            return _EMPTY
        merged: dict[str, Any] | None = None
        args = (run, attempt)
        for function, picks, impl in plan:
            try:
                given = function(*args) if picks is None else function(*[args[i] for i in picks])
                if given is None:
                    continue
                if not isinstance(given, dict):
                    raise PluginError(f"returned {given!r}; expected a dict or None")
                merged = dict(given) if merged is None else merged | given
            except Exception as exc:
                where = f"woflo_attempt_context of plugin {impl.plugin_name!r}"
                report_hook_error(run, where, exc)
        return _EMPTY if merged is None else merged

    def cached_outcome(self, run: BaseTaskRun[Any]) -> Outcome | BaseTaskRun[Any] | None:
        """A value for ``run`` without executing it, a run to take it from, or ``None``. An
        exception from a plugin is raised (a cache key that cannot be made fails the call);
        an answer of another kind is reported on the run and ignored."""
        count, plans = self._plans  # (:meth:`_planned`, inlined: once per run)
        entry = plans.get("woflo_cached_outcome") if count == self._counter.changes else None
        entry = entry or self._entry("woflo_cached_outcome")
        if not entry[1] and entry[2] is None:  # (no plugin asked: no call, for most tasks)
            return None
        answer = self._decide(entry, (run,), True)
        if answer is None or (isinstance(answer, Outcome) and answer.error is None):
            return answer
        if isinstance(answer, RunLike) and hasattr(answer, "run_id") and answer is not run:
            return answer  # type: ignore[return-value]  # (a run: RunLike, with a run_id)
        report_hook_error(
            run,
            "woflo_cached_outcome",
            PluginError(
                f"woflo_cached_outcome returned {answer!r}; expected None, an Outcome with a "
                "value (no error), or another run"
            ),
        )
        return None

    def retry_delay(self, run: BaseTaskRun[Any], attempt: int, outcome: Outcome) -> float | None:
        """Seconds until the next attempt, or ``None`` for no retry."""
        try:
            delay = self._decide(self._planned("woflo_retry_delay"), (run, attempt, outcome), True)
        except Exception as exc:
            report_hook_error(run, "woflo_retry_delay", exc)
            return None
        if delay is None or delay is False:
            return None
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not delay >= 0  # nan too
        ):
            report_hook_error(
                run,
                "woflo_retry_delay",
                PluginError(f"woflo_retry_delay returned {delay!r}; expected seconds >= 0"),
            )
            return None
        return float(delay)

    def attempt_deadline(self, run: BaseTaskRun[Any], attempt: int) -> float | None:
        """The smallest time limit, in seconds, any plugin sets on the attempt; ``None``: none."""
        try:
            count, plans = self._plans  # (:meth:`_planned`, inlined: once per attempt)
            entry = plans.get("woflo_attempt_deadline") if count == self._counter.changes else None
            entry = entry or self._entry("woflo_attempt_deadline")
            if not entry[1] and entry[2] is None:  # (no plugin limits the task: no call)
                return None
            limits = self._decide(entry, (run, attempt), False)
        except Exception as exc:
            report_hook_error(run, "woflo_attempt_deadline", exc)
            return None
        if not limits:  # (the common case: no limit)
            return None
        numbers = [
            float(limit)
            for limit in limits
            if isinstance(limit, int | float) and not isinstance(limit, bool) and limit == limit
        ]
        return min(numbers) if numbers else None

    # ---- execution ---------------------------------------------------------------------------

    def execute_attempt(self, call: TaskCall) -> Outcome:
        """Execute ``call`` through the execution wrappers; always returns an outcome.

        An exception from a wrapper (not from the task) is the attempt's failure too.
        """
        try:
            count, plans = self._plans  # (:meth:`_planned`, inlined: once per attempt)
            entry = plans.get("woflo_execute_attempt") if count == self._counter.changes else None
            _impls, plan, _wrapped, old_style = entry or self._entry("woflo_execute_attempt")
            if old_style:  # (pluggy's own call: its Result objects for old-style wrappers)
                return self._relay.woflo_execute_attempt(call=call)  # type: ignore[no-any-return]
            return wrapped_call(plan, (call,))  # type: ignore[no-any-return]
        except BaseException as error:
            return Outcome(error=error)

    def forwarded_log(self, message: dict[str, Any]) -> bool | None:
        """Hand a log message a plugin sent from another process to the plugin that renders
        it; ``None`` if none does. An exception is reported on stderr, never raised."""
        try:
            return self._relay.woflo_forwarded_log(message=message)  # type: ignore[no-any-return]
        except Exception:
            import traceback

            traceback.print_exc()
            return True


def _plan(caller: Any, impls: list[Any]) -> list[tuple[Any, tuple[int, ...] | None, Any]]:
    """How to call each implementation: its function, and ``None`` when it takes every one of
    the specification's arguments, in order, else the positions of those it takes. Arguments
    it gives a default are passed by keyword, as pluggy does."""
    spec = tuple(caller.spec.argnames) if caller.spec is not None else ()
    plan: list[tuple[Any, tuple[int, ...] | None, Any]] = []
    for impl in reversed(impls):
        names = tuple(impl.argnames)
        picks = None if names == spec else tuple(spec.index(name) for name in names)
        keywords = {name: spec.index(name) for name in impl.kwargnames if name in spec}
        if keywords:
            positions = tuple(range(len(spec))) if picks is None else picks
            function = _with_keywords(impl.function, positions, keywords)
            plan.append((function, None, impl))
        else:
            plan.append((impl.function, picks, impl))
    return plan


def _with_keywords(function: Any, positions: tuple[int, ...], keywords: dict[str, int]) -> Any:
    """``function`` called with the arguments at ``positions``, and ``keywords`` by name."""

    def call(*args: Any) -> Any:
        named = {name: args[index] for name, index in keywords.items()}
        return function(*[args[index] for index in positions], **named)

    return call


_EMPTY: Mapping[str, Any] = MappingProxyType({})
