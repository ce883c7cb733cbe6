"""woflo's background threads, which leave process signals to the main thread."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["background_thread"]

_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def background_thread(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """A daemon thread (not started) running ``target(*args)`` with SIGINT and SIGTERM blocked.

    Python handles signals in the main thread only, and a blocked wait there (``run.wait()``)
    is woken by a signal only if the kernel delivers it to that thread: one delivered to a
    background thread waits until the main thread wakes for another reason (Ctrl-C then seems
    ignored). Blocked in every other thread, they are delivered to the main thread.
    """
    return threading.Thread(target=_quiet, args=(target, args), name=name, daemon=True)


def _quiet(target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    target(*args)
