"""Where a run's time goes (imported by ``run.py``): a no-op's cost per call with every plugin
on, with each concern plugin disabled in turn, and with all of them disabled (the core and the
runner alone), on the sequential and the multiprocess runners. A plugin's share is the
difference between "every plugin" and "without it"."""

from __future__ import annotations

from collections.abc import Callable

System = Callable[[], float]

CONCERNS = ("retries", "timeouts", "cache", "history", "logging", "metrics", "otel")
"""The built-in concern plugins (the runners aside), each disabled in turn."""


def plugin_costs(n_sequential: int, n_pool: int) -> dict[str, System]:
    """Seconds per call: ``n_sequential`` sequential runs one after another, ``n_pool``
    multiprocess runs submitted then collected, for each set of plugins."""
    from _woflo import noop_task, one_after_another, submitted_then_collected

    import woflo_plugins.history as recording

    def flush() -> None:
        recording.flush(30)

    variants: dict[str, list[str]] = {"every plugin": []}
    variants |= {f"without {name}": [name] for name in CONCERNS}
    variants["core and runner only"] = list(CONCERNS)
    systems: dict[str, System] = {}
    for label, disabled in variants.items():
        systems[f"sequential, {label}"] = one_after_another(
            noop_task("sequential", disabled), n_sequential, flush
        )
    for label, disabled in variants.items():
        t = noop_task("multiprocess", disabled)
        systems[f"multiprocess, {label}"] = submitted_then_collected(t, n_pool, after=flush)
    return systems
