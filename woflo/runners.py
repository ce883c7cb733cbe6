"""Every registered runner by its class name: ``from woflo.runners import SequentialTaskRun``.

Runner classes come from plugins (built-in or third-party); looking one up here loads the
plugins on first use. :class:`BaseTaskRun` is here too, for runner authors.
"""

from __future__ import annotations

from typing import Any

from woflo._run import BaseTaskRun

__all__ = ["BaseTaskRun"]


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    from woflo.plugins import get_plugin_system

    runners = get_plugin_system().runners.values()
    for cls in runners:
        if cls.__name__ == name:
            return cls
    known = ", ".join(sorted(cls.__name__ for cls in runners)) or "none"
    raise AttributeError(
        f"module 'woflo.runners' has no runner {name!r}; registered runners: {known} "
        "(a runner comes from a plugin of the 'woflo' entry-point group: is it installed, "
        "or disabled by WOFLO_DISABLE_PLUGINS?)"
    )


def __dir__() -> list[str]:
    from woflo.plugins import get_plugin_system

    return sorted({"BaseTaskRun", *(c.__name__ for c in get_plugin_system().runners.values())})
