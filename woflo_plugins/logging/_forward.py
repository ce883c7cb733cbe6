"""structlog events of attempts that run in another process, rendered by the caller.

In the worker (any process whose attempts' logs are captured, :func:`woflo.remote.log_context`),
structlog is configured, unless something configured it there already, to end every event
with :func:`_send`: the event dict (every key-value, the structlog context with ``task``,
``run_id`` and ``attempt``, and ``pid``), the logger's name, the method (level) and the time go
to the caller with :func:`woflo.remote.forward_log`, in order with the attempt's other log
records. If structlog is not imported yet, that happens the moment something imports it.

In the caller, :func:`replay` logs the event again through the caller's structlog
configuration, on a logger of the same name, as if it were logged there and then at the
worker's time: structlog's defaults when the application configured nothing (the line an
in-process event gives), its own processors (JSON, stdlib routing) when it did.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any

from woflo import remote

__all__ = ["KIND", "prepare_worker", "replay"]

KIND = "structlog"
"""The kind of message (``message[woflo.remote.FORWARDED]``) this module sends."""
_LEVELS = {"debug", "info", "warning", "error", "critical"}
_SAME = {"warn": "warning", "fatal": "critical", "exception": "error", "msg": "info"}

ready = False
"""Whether :func:`prepare_worker` has done its part in this process."""
bound_on_import: tuple[str, ...] = ()
"""The run context keys bound when an attempt imported structlog (to unbind at its end)."""
_local: Any = None  # structlog's default configuration, for events no attempt captures
_at = threading.local()  # the message being replayed in this thread


# ---- in the worker ---------------------------------------------------------------------------


def prepare_worker() -> None:
    """Make structlog send its events to the caller: now if it is imported, else on import."""
    global ready
    if ready:
        return
    ready = True
    structlog = sys.modules.get("structlog")
    if structlog is not None:
        _configure(structlog)
    elif not any(isinstance(finder, _OnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OnImport())


def _configure(structlog: Any) -> None:
    global _local
    if structlog.is_configured():  # the application's own configuration holds here
        return
    import structlog.dev
    import structlog.processors

    _local = structlog.get_config()  # (the defaults)
    structlog.configure(
        processors=[  # (the context travels apart: the caller's processors merge it)
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.format_exc_info,  # tracebacks travel as text
            _send,
        ],
        logger_factory=_Named,
        wrapper_class=structlog.make_filtering_bound_logger(0),  # the caller's config filters
        cache_logger_on_first_use=True,
    )


class _Named:
    """What a worker's structlog logger wraps: just its name (``get_logger(name)``)."""

    __slots__ = ("name",)

    def __init__(self, *args: Any) -> None:
        self.name = args[0] if args and isinstance(args[0], str) else _caller_module()


def _caller_module() -> str | None:
    """The module that asked for a logger without a name, as ``structlog.stdlib`` finds it."""
    try:
        from structlog._frames import _find_first_app_frame_and_name

        return _find_first_app_frame_and_name([__name__])[1]
    except Exception:
        return None


def _send(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The last processor in the worker: the event goes to the caller, and nothing is printed
    here (outside any attempt, as structlog's defaults print it)."""
    import structlog

    run = remote.log_context()
    context = structlog.contextvars.get_contextvars()
    message = {
        remote.FORWARDED: KIND,
        "logger": getattr(logger, "name", None),
        "method": method,
        "created": time.time(),
        "event": dict(event_dict),
        "context": context,
    }
    if run is None:
        if _local is not None:
            _log(_local, message, local=True)
        raise structlog.DropEvent
    for key, value in run.items():
        context.setdefault(key, value)
    context.setdefault("pid", os.getpid())
    remote.forward_log(message)
    raise structlog.DropEvent


class _OnImport:
    """Configures structlog the moment something imports it (then steps aside). A meta path
    finder by protocol, not by ``importlib.abc``'s base class (whose import, with the
    ``importlib.resources`` it pulls in, costs a worker's start 4 ms)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "structlog":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenConfigure(spec.loader)  # type: ignore[assignment]
        return spec


class _ThenConfigure:  # a loader by protocol (see _OnImport)
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        global bound_on_import
        self._loader.exec_module(module)
        _configure(module)
        run = remote.log_context()
        if run:  # imported by the attempt: its context, as if bound from its start
            import structlog.contextvars

            structlog.contextvars.bind_contextvars(**run)
            bound_on_import = tuple(run)

    def __getattr__(self, name: str) -> Any:  # resources, source: the real loader's
        return getattr(self._loader, name)


# ---- in the caller ---------------------------------------------------------------------------


def replay(message: dict[str, Any]) -> bool | None:
    """Log a worker's event through this process's structlog configuration (``None``: not a
    message of this module's)."""
    if message.get(remote.FORWARDED) != KIND:
        return None
    import structlog

    _log(structlog.get_config(), message)
    return True


_cache: dict[str | None, Any] = {}
_cached_for: tuple[Any, ...] = ()


def _log(config: dict[str, Any], message: dict[str, Any], *, local: bool = False) -> None:
    """Log ``message`` through ``config``: its context merged where the configuration merges
    the context (as it would be in-process), at its time (unless ``local``: now)."""
    logger = _logger(config, message.get("logger"))
    method = message["method"]
    if method not in _LEVELS:
        method = _SAME.get(method, "info")
    event = dict(message["event"])
    text = event.pop("event", "")
    _at.message = message
    _at.local = local
    try:
        getattr(logger, method)(text, **event)
    finally:
        _at.message = None


def _logger(config: dict[str, Any], name: str | None) -> Any:
    """A logger of ``config`` named ``name``, that merges the replayed event's context and
    stamps its time (:func:`_for_replay`)."""
    global _cache, _cached_for
    key = (config["processors"], config["logger_factory"], config["wrapper_class"])
    if len(key) != len(_cached_for) or any(
        a is not b for a, b in zip(key, _cached_for, strict=True)
    ):
        _cache, _cached_for = {}, key
    logger = _cache.get(name)
    if logger is None:
        import structlog

        factory = config["logger_factory"]
        logger = _cache[name] = structlog.wrap_logger(
            factory(name) if name is not None else factory(),
            processors=[_for_replay(p) for p in config["processors"]],
            wrapper_class=config["wrapper_class"],
            context_class=config["context_class"],
            cache_logger_on_first_use=True,
        )
    return logger


def _for_replay(processor: Any) -> Any:
    """``processor``, or in place of a timestamper or of ``merge_contextvars``, one that does
    the same with the replayed event's time and context."""
    from structlog.contextvars import merge_contextvars
    from structlog.processors import MaybeTimeStamper, TimeStamper

    if processor is merge_contextvars:
        return _merge
    if isinstance(processor, TimeStamper):
        return _Stamp(processor, processor, only_if_missing=False)
    if isinstance(processor, MaybeTimeStamper):
        return _Stamp(processor.stamper, processor, only_if_missing=True)
    return processor


def _merge(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """``merge_contextvars``, then the replayed event's own context (the worker's)."""
    from structlog.contextvars import merge_contextvars

    event_dict = merge_contextvars(logger, name, event_dict)
    message = getattr(_at, "message", None)
    if message is not None:
        for key, value in message.get("context", {}).items():
            event_dict.setdefault(key, value)
    return event_dict


class _Stamp:
    """A ``TimeStamper`` that stamps the time of the event being replayed, when there is one."""

    def __init__(self, stamper: Any, original: Any, *, only_if_missing: bool) -> None:
        self.fmt, self.utc, self.key = stamper.fmt, stamper.utc, stamper.key
        self._original = original
        self._only_if_missing = only_if_missing

    def __call__(self, logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> Any:
        message = getattr(_at, "message", None)
        if message is None or _at.local:
            return self._original(logger, name, event_dict)
        when = message["created"]
        if not (self._only_if_missing and self.key in event_dict):
            event_dict[self.key] = _format(when, self.fmt, self.utc)
        return event_dict


def _format(when: float, fmt: str | None, utc: bool) -> Any:
    """``when`` as structlog's ``TimeStamper(fmt, utc)`` writes the present."""
    if fmt is None:
        return when
    import datetime  # (here: a worker's start need not pay for it)

    moment = (
        datetime.datetime.fromtimestamp(when, tz=datetime.UTC)
        if utc
        else datetime.datetime.fromtimestamp(when)  # (local, as structlog does)
    )
    if fmt.upper() == "ISO":
        return moment.isoformat().replace("+00:00", "Z") if utc else moment.isoformat()
    return moment.strftime(fmt) if utc else moment.astimezone().strftime(fmt)
