"""The plugin system: discovery through entry points, and the registry of what plugins give.

Nothing here runs at ``import woflo``. The first task decoration (or ``woflo.runners`` lookup,
or ``woflo plugins``) builds one :class:`PluginSystem`: a ``pluggy.PluginManager("woflo")`` with
the specs of :mod:`woflo.hookspecs`, every plugin of the ``woflo`` entry-point group (woflo's own
built-ins come through that same group) except those named in ``WOFLO_DISABLE_PLUGINS``, and what
they contribute: runners, task options, the default runner. Another process (a worker) rebuilds
the same system from :meth:`PluginSystem.manifest` without scanning distributions.

Owned elsewhere: calling the hooks (:mod:`woflo._hooks`), the hooks themselves
(:mod:`woflo.hookspecs`). Tests and tools use :func:`get_plugin_system` and
:func:`set_plugin_system`; :mod:`woflo.testing` has fixtures that do it per test.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from woflo import hookspecs
from woflo._hooks import Hooks, PluginManager
from woflo._run import BaseTaskRun
from woflo._threads import background_thread
from woflo._types import CORE_OPTIONS, Outcome, TaskCall, TaskOption
from woflo.errors import PluginError
from woflo.hookspecs import NOTIFICATIONS, hookimpl

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "PluginSystem",
    "background_thread",
    "current_plugin_system",
    "get_plugin_system",
    "hookimpl",
    "set_plugin_system",
]

ENTRY_POINT_GROUP = "woflo"
DISABLE_ENV = "WOFLO_DISABLE_PLUGINS"
CORE_PLUGIN_NAME = "woflo.core"


class _CorePlugin:
    """woflo's own implementation of the innermost execution."""

    @hookimpl(trylast=True)
    def woflo_execute_attempt(self, call: TaskCall) -> Outcome:
        return call.invoke()


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What ``woflo plugins`` shows of one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    entry_point: str | None = None
    hooks: tuple[str, ...] = ()
    runners: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(slots=True)
class PluginSystem:
    """A loaded plugin manager and everything its plugins contributed."""

    pm: pluggy.PluginManager
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    runners: dict[str, type[BaseTaskRun[Any]]] = field(default_factory=dict)
    options: dict[str, TaskOption] = field(default_factory=dict)
    hooks: Hooks = field(init=False)
    _runner_owner: dict[str, str] = field(default_factory=dict)
    _option_owner: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hooks = Hooks(self.pm)

    # ---- building -----------------------------------------------------------------------

    @classmethod
    def empty(cls) -> PluginSystem:
        """A plugin system with only woflo's core registered (tests build on this)."""
        pm = PluginManager(ENTRY_POINT_GROUP)
        pm.add_hookspecs(hookspecs)
        pm.register(_CorePlugin(), name=CORE_PLUGIN_NAME)
        return cls(pm)

    @classmethod
    def from_entry_points(cls, disabled: Iterable[str] | None = None) -> PluginSystem:
        """Load every plugin of the ``woflo`` entry-point group, minus the disabled ones."""
        from woflo._entrypoints import Found, entry_points

        if disabled is None:
            disabled = _disabled_from_env()
        blocked = set(disabled)
        system = cls.empty()
        seen: dict[str, Found] = {}

        def label(ep: Found) -> str:
            if ep.distribution is None and ep.version is None:
                return "an unknown distribution"
            return f"distribution {ep.distribution} {ep.version}"

        # woflo's own first, whatever the order of sys.path: a clash then names the third-party
        # plugin, and third-party decisions (registered later, so called first) win over ours
        found = sorted(entry_points(ENTRY_POINT_GROUP), key=lambda ep: ep.distribution != "woflo")
        for ep in found:
            if ep.name in seen:
                if seen[ep.name].value != ep.value:
                    raise PluginError(
                        f"two woflo plugins are named {ep.name!r}: {seen[ep.name].value!r} from "
                        f"{label(seen[ep.name])} and {ep.value!r} from {label(ep)}; "
                        "uninstall one of the distributions"
                    )
                continue
            seen[ep.name] = ep
            if ep.name in blocked:
                system.pm.set_blocked(ep.name)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"woflo plugin {ep.name!r} (entry point {ep.value!r} from "
                    f"{label(ep)}) failed to import: {type(exc).__name__}: {exc}. "
                    f"{_how_to_disable(ep.name)}"
                ) from exc
            system.add(
                plugin,
                name=ep.name,
                distribution=ep.distribution,
                version=ep.version,
                entry_point=ep.value,
            )
        system.check()
        return system

    @classmethod
    def from_manifest(
        cls, manifest: Iterable[tuple[str, str, str | None, str | None]]
    ) -> PluginSystem:
        """Load exactly these plugins, as listed by :meth:`manifest` in another process.

        Skips scanning installed distributions, so a worker starts without ``importlib.metadata``.
        """
        from woflo._entrypoints import Found

        system = cls.empty()
        for name, value, distribution, version in manifest:
            plugin = Found(name, value, distribution, version).load()  # (as the caller did)
            system.add(
                plugin, name=name, distribution=distribution, version=version, entry_point=value
            )
        system.check()
        return system

    def manifest(self) -> list[tuple[str, str, str | None, str | None]]:
        """The entry-point plugins loaded here, for :meth:`from_manifest` in a worker."""
        return [
            (info.name, info.entry_point, info.distribution, info.version)
            for info in self.infos.values()
            if info.entry_point is not None
        ]

    def add(
        self,
        plugin: object,
        *,
        name: str | None = None,
        distribution: str | None = None,
        version: str | None = None,
        entry_point: str | None = None,
    ) -> str:
        """Register one plugin and collect what it contributes; return its name."""
        origin = _origin(name, entry_point, distribution)
        try:
            registered = self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(
                f"{origin} is not a valid woflo plugin: {exc}. {_how_to_disable(name)}"
            ) from exc
        if registered is None:  # blocked
            return name or ""
        plugin_name = self.pm.get_name(plugin) or registered
        implemented = {impl.function.__name__ for impl in self._impls_of(plugin)}
        unmarked = sorted(
            attr
            for attr in dir(plugin)
            if attr.startswith("woflo_")
            and attr not in implemented
            and callable(getattr(plugin, attr, None))
        )
        if unmarked:
            self.pm.unregister(plugin)
            raise PluginError(
                f"{origin} defines {', '.join(unmarked)} without @woflo.hookimpl, so woflo "
                f"would never call it; mark it. {_how_to_disable(name)}"
            )
        for impl in self._impls_of(plugin):
            if (impl.hookwrapper or impl.wrapper) and impl.function.__name__ in NOTIFICATIONS:
                self.pm.unregister(plugin)
                raise PluginError(
                    f"{origin}: {impl.function.__name__} is a lifecycle notification and "
                    f"cannot be a wrapper. {_how_to_disable(name)}"
                )
        runners = self._store(
            self.runners,
            self._runner_owner,
            self._collect_runners(plugin, plugin_name, origin),
            origin,
        )
        options = self._store(
            self.options,
            self._option_owner,
            self._collect_options(plugin, plugin_name, origin),
            origin,
        )
        self.infos[plugin_name] = PluginInfo(
            name=plugin_name,
            module=getattr(plugin, "__name__", type(plugin).__module__),
            distribution=distribution,
            version=version,
            builtin=distribution == "woflo",
            entry_point=entry_point,
            hooks=tuple(sorted(impl.function.__name__ for impl in self._impls_of(plugin))),
            runners=runners,
            options=options,
        )
        return plugin_name

    def check(self) -> None:
        """Fail on hook implementations that match no specification (a misspelt hook)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            info = self.infos.get(self.pm.get_name(exc.plugin) or "")
            origin = _origin(
                info.name if info else None,
                info.entry_point if info else None,
                info.distribution if info else None,
            )
            known = ", ".join(hookspecs.hook_names())
            raise PluginError(
                f"{origin} implements a hook woflo does not have: {exc}. Known hooks: "
                f"{known}. {_how_to_disable(info.name if info else None)}"
            ) from exc

    def derive(self, plugins: Sequence[object], owner: str) -> PluginSystem:
        """A copy of this system with ``plugins`` added (``@task(plugins=[...])``)."""
        child = PluginSystem.empty()
        for name, plugin in self.pm.list_name_plugin():
            if name == CORE_PLUGIN_NAME or plugin is None:
                continue
            info = self.infos.get(name)
            child.pm.register(plugin, name=name)
            if info is not None:
                child.infos[name] = info
        child.runners = dict(self.runners)
        child.options = dict(self.options)
        child._runner_owner = dict(self._runner_owner)
        child._option_owner = dict(self._option_owner)
        for i, plugin in enumerate(plugins):
            child.add(plugin, name=f"{owner}[plugins][{i}]")
        child.check()
        return child

    # ---- queries ------------------------------------------------------------------------

    def default_runner(self) -> str | None:
        """The registered name of the runner tasks use unless told otherwise."""
        return self.pm.hook.woflo_default_runner()  # type: ignore[no-any-return]

    def hook_names(self) -> list[str]:
        """Every hook name of the specification."""
        return hookspecs.hook_names()

    # ---- internals ----------------------------------------------------------------------

    def _impls_of(self, plugin: object) -> list[Any]:
        return [
            impl
            for caller in self.pm.get_hookcallers(plugin) or []
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin
        ]

    def _contributions(self, impl: Any, plugin: object, origin: str, name: str) -> list[Any]:
        """Call one registration hook implementation; a failure names the plugin."""
        try:
            return list(impl.function() or ())
        except Exception as exc:
            self.pm.unregister(plugin)
            raise PluginError(
                f"{origin}: {impl.function.__name__} raised {type(exc).__name__}: {exc}. "
                f"{_how_to_disable(name)}"
            ) from exc

    def _contributed(self, hook: str, plugin: object, origin: str, name: str) -> Iterator[Any]:
        """What ``plugin``'s implementations of the registration ``hook`` return, item by item."""
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin is plugin:
                yield from self._contributions(impl, plugin, origin, name)

    @staticmethod
    def _store(
        target: dict[str, Any],
        owners: dict[str, str],
        items: Iterator[tuple[str, Any]],
        origin: str,
    ) -> tuple[str, ...]:
        """Keep each ``(name, contribution)`` of ``items`` in ``target``, owned by ``origin``."""
        names = []
        for key, value in items:
            target[key] = value
            owners[key] = origin
            names.append(key)
        return tuple(names)

    def _refuse(self, plugin: object, message: str, name: str) -> PluginError:
        """Unregister ``plugin``, whose contribution is invalid: the error to raise."""
        self.pm.unregister(plugin)
        return PluginError(f"{message} {_how_to_disable(name)}")

    def _collect_runners(
        self, plugin: object, name: str, origin: str
    ) -> Iterator[tuple[str, type[BaseTaskRun[Any]]]]:
        for cls in self._contributed("woflo_add_runners", plugin, origin, name):
            if not (isinstance(cls, type) and issubclass(cls, BaseTaskRun)) or not cls.name:
                raise self._refuse(
                    plugin,
                    f"{origin}: woflo_add_runners returned {cls!r}; expected subclasses of "
                    "woflo.BaseTaskRun with a non-empty `name`.",
                    name,
                )
            for existing_name, existing in self.runners.items():
                if existing_name == cls.name or existing.__name__ == cls.__name__:
                    raise self._refuse(
                        plugin,
                        f"runner {cls.name!r} ({cls.__module__}.{cls.__qualname__}) from "
                        f"{origin} clashes with runner {existing_name!r} "
                        f"({existing.__module__}.{existing.__qualname__}) from "
                        f"{self._runner_owner[existing_name]};",
                        name,
                    )
            yield cls.name, cls

    def _collect_options(
        self, plugin: object, name: str, origin: str
    ) -> Iterator[tuple[str, TaskOption]]:
        for option in self._contributed("woflo_add_options", plugin, origin, name):
            if not isinstance(option, TaskOption):
                raise self._refuse(
                    plugin,
                    f"{origin}: woflo_add_options returned {option!r}; expected "
                    "woflo.TaskOption instances.",
                    name,
                )
            if option.name in CORE_OPTIONS or option.name in self.options:
                other = self._option_owner.get(option.name, "woflo's core")
                raise self._refuse(
                    plugin,
                    f"task option {option.name!r} from {origin} is already declared by {other}.",
                    name,
                )
            yield option.name, option


def _disabled_from_env() -> set[str]:
    return {name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()}


def _origin(name: str | None, entry_point: str | None, distribution: str | None) -> str:
    if entry_point is None:
        return f"plugin {name!r}" if name else "plugin"
    source = f"distribution {distribution}" if distribution else "no known distribution"
    return f"plugin {name!r} (entry point {entry_point!r} from {source})"


def _how_to_disable(name: str | None) -> str:
    if not name or "[plugins]" in name:
        return "Fix or remove the plugin."
    return f"To run without it, set {DISABLE_ENV}={name} (or uninstall its distribution)."


# ---- the process-wide plugin system -----------------------------------------------------

_system: PluginSystem | None = None
_system_lock = threading.Lock()


def get_plugin_system() -> PluginSystem:
    """The process-wide plugin system, loaded from entry points on first use."""
    global _system
    if _system is None:
        with _system_lock:
            if _system is None:
                _system = PluginSystem.from_entry_points()
    return _system


def current_plugin_system() -> PluginSystem | None:
    """The process-wide plugin system if it is loaded already, else ``None`` (loads nothing)."""
    return _system


def set_plugin_system(system: PluginSystem | None) -> PluginSystem | None:
    """Replace the process-wide plugin system (``None``: reload on next use); return the old."""
    global _system
    with _system_lock:
        previous, _system = _system, system
    return previous
