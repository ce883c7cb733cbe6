"""Which hooks sit out a task: the plugins' ``woflo_idle_hooks`` answers, asked and checked.

Owned here: asking each implementation for its own plugin and checking what it names. Leaving
the named implementations out of a task's calls is :mod:`woflo._hooks`' business.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from woflo.errors import PluginError
from woflo.hookspecs import RUN_HOOKS


def ask_idle(relay: Any, task: Any, strict: bool) -> dict[str, frozenset[str]]:
    """The hooks each plugin names idle for ``task`` (``relay``: a plugin manager's ``hook``),
    by plugin name.

    :param strict: raise a wrong answer (at decoration), else log it on ``woflo.plugins`` and
        leave that plugin's hooks all called (asked again later, in the middle of a call).
    :raises woflo.errors.PluginError: when ``strict``, for an answer that is not a list of
        the plugin's own run hooks, or an implementation that raises.
    """
    idle: dict[str, frozenset[str]] = {}
    for impl in reversed(relay.woflo_idle_hooks.get_hookimpls()):  # (pluggy's order)
        where = f"woflo_idle_hooks of plugin {impl.plugin_name!r}"
        try:
            answer = impl.function(task) if impl.argnames else impl.function()
            names = _checked(relay, impl.plugin_name, answer, where)
            if names:
                _hashable(impl.plugin, where)
        except Exception as exc:
            error = exc if isinstance(exc, PluginError) else PluginError(f"{where} raised {exc!r}")
            if strict:
                raise error from (None if error is exc else exc)
            import logging

            logging.getLogger("woflo.plugins").error("%s; all its hooks are called", error)
            continue
        if names:
            idle[impl.plugin_name] = names
    return idle


def _checked(relay: Any, plugin: str, answer: Any, where: str) -> frozenset[str]:
    """The hook names of an answer, checked: run hooks that ``plugin`` implements."""
    if answer is None:
        return frozenset()
    if isinstance(answer, str | bytes) or not isinstance(answer, Iterable):
        raise PluginError(f"{where} returned {answer!r}; expected a list of hook names or None")
    own = [
        name
        for name in RUN_HOOKS
        if any(impl.plugin_name == plugin for impl in getattr(relay, name).get_hookimpls())
    ]
    names = frozenset(answer)
    wrong = sorted(repr(name) for name in names if name not in own)
    if wrong:
        raise PluginError(
            f"{where} named {', '.join(wrong)}: it may name only the run hooks it implements "
            f"({', '.join(own) or 'none'})"
        )
    return names


def _hashable(plugin: object, where: str) -> None:
    """Refuse a plugin object that cannot be hashed: its hooks are left out of a call with a
    wrapper through pluggy's ``subset_hook_caller``, which keeps the plugins in a set."""
    try:
        hash(plugin)
    except TypeError:
        raise PluginError(
            f"{where}: the plugin object {type(plugin).__name__!r} cannot be hashed, and woflo "
            "leaves hooks out of a call by plugin object: make it hashable (a module, a plain "
            "class instance, a @dataclass(eq=False) or frozen=True)"
        ) from None
