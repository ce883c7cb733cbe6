"""The pickling policy: how tasks, arguments, results and exceptions cross a process boundary.

Public through :mod:`woflo.remote`. Plain ``pickle`` is used whenever it can do (it is fast,
and a call that needs nothing more never imports cloudpickle); otherwise cloudpickle, so
functions, lambdas, closures, classes and ``@task`` functions defined in ``__main__`` or in a
function travel by value while importable ones travel by reference.
Objects the worker received by value from the caller's ``__main__`` go back *by reference*, so
the caller gets its own class (``except MyError:`` in the script works).

An exception that cannot be pickled, or re-created by its constructor (a custom ``__init__``, a
frozen dataclass), is rebuilt without calling ``__init__`` (with its message as ``args`` if
its own arguments do not pickle); when even its class cannot be loaded, a
:class:`woflo.errors.RemoteTaskError` stands in with its type name, message and traceback text.
The worker's traceback is always attached as ``__cause__``.
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
import traceback
import types
from collections.abc import Mapping
from typing import Any

from woflo.errors import ArgumentNotPicklable, RemoteTaskError, RemoteTraceback

PROTOCOL = pickle.HIGHEST_PROTOCOL


def _main_lookup(qualname: str) -> Any:
    target: Any = sys.modules["__main__"]
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


_FunctionType = type(_main_lookup)
_pickler_class: Any = None


def _pickler() -> Any:
    """The cloudpickle-based pickler, built on first use: a call that plain ``pickle``
    handles (the common case) never imports cloudpickle, in the caller or in a worker."""
    global _pickler_class
    if _pickler_class is not None:
        return _pickler_class
    import cloudpickle

    code_reduce = getattr(cloudpickle.cloudpickle, "_code_reduce", None)

    def keep_filename(code: types.CodeType) -> Any:
        """cloudpickle's reduction of a code object, keeping its file name for tracebacks."""
        assert code_reduce is not None
        constructor, args = code_reduce(code)
        return constructor, tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        """cloudpickle, except that ``__main__`` objects the caller can look up go by
        reference, and functions sent by value keep their file name (tracebacks show the
        source lines)."""

        if code_reduce is not None:
            dispatch_table = collections.ChainMap(
                {types.CodeType: keep_filename}, cloudpickle.Pickler.dispatch_table
            )

        def __init__(self, file: io.BytesIO, *, main_by_reference: bool) -> None:
            super().__init__(file, protocol=PROTOCOL)
            self._main_by_reference = main_by_reference

        def reducer_override(self, obj: Any) -> Any:
            if (
                self._main_by_reference
                and isinstance(obj, type | _FunctionType)
                and getattr(obj, "__module__", None) in _MAIN_NAMES
                and "<locals>" not in getattr(obj, "__qualname__", "<locals>")
            ):
                return (_main_lookup, (obj.__qualname__,))
            return super().reducer_override(obj)

    _pickler_class = Pickler
    return Pickler


_MAIN_NAMES = ("__main__", "__mp_main__")
"""The script's module: ``__mp_main__`` in a spawn/forkserver child of a multiprocessing program."""


def dumps(obj: Any, *, main_by_reference: bool = False) -> bytes:
    """Pickle ``obj`` with cloudpickle (``main_by_reference``: in a worker, for the caller)."""
    pickler = _pickler()
    mp_main = sys.modules.get("__mp_main__")
    if mp_main is not None and not main_by_reference:
        import cloudpickle

        # a worker has no such module (its own "__main__" is not the script): send by value
        cloudpickle.register_pickle_by_value(mp_main)
    buffer = io.BytesIO()
    pickler(buffer, main_by_reference=main_by_reference).dump(obj)
    return buffer.getvalue()


def dumps_for_worker(obj: Any) -> bytes:
    """Pickle ``obj`` to send to a worker: the plain (fast) pickle when it refers to nothing
    in ``__main__`` (which a worker does not have), else cloudpickle."""
    try:
        data = pickle.dumps(obj, PROTOCOL)
    except Exception:
        return dumps(obj)
    return data if b"__main__" not in data and b"__mp_main__" not in data else dumps(obj)


def dumps_for_caller(obj: Any) -> bytes:
    """Pickle ``obj`` in a worker to send back: the plain pickle when it can, else cloudpickle
    with the caller's ``__main__`` objects by reference (the worker's own ``__main__`` has
    none of them, so a plain pickle referring to one fails and lands here)."""
    try:
        return pickle.dumps(obj, PROTOCOL)
    except Exception:
        return dumps(obj, main_by_reference=True)


loads = pickle.loads


def dump_task(task: Any) -> bytes:
    """Pickle a task for another process, or raise :class:`ArgumentNotPicklable`."""
    try:
        return dumps_for_worker(task)
    except Exception as exc:
        raise ArgumentNotPicklable(
            f"task {task.name!r} cannot be pickled to send it to another process: "
            f"{type(exc).__name__}: {exc}. Its function, options and plugins must be "
            "picklable (cloudpickle), or use runner='sequential'"
        ) from exc


def dump_arguments(task_name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
    """Pickle a call's arguments, or raise :class:`ArgumentNotPicklable` naming the culprit."""
    try:
        return dumps_for_worker((args, kwargs))
    except Exception as exc:
        failure = exc
    for label, value in [
        *((f"#{i} (positional)", a) for i, a in enumerate(args)),
        *((repr(k), v) for k, v in kwargs.items()),
    ]:
        try:
            dumps(value)
        except Exception as exc:
            raise ArgumentNotPicklable(
                f"argument {label} of task {task_name!r} cannot be pickled to send it to a "
                f"worker process: {type(exc).__name__}: {exc} (value: {_short_repr(value)}). "
                "Pass something picklable, or use runner='sequential' to run in this process"
            ) from exc
    raise ArgumentNotPicklable(
        f"the arguments of task {task_name!r} cannot be pickled: "
        f"{type(failure).__name__}: {failure}"
    ) from failure


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__qualname__} object>"
    return text if len(text) <= 80 else text[:77] + "..."


# ---- exceptions -------------------------------------------------------------------------


def dump_exception(error: BaseException) -> bytes:
    """Pack a task's exception in the worker: the exception itself if it pickles, plus what
    is needed to rebuild it without its constructor, plus its type name, message and
    traceback text."""
    tb_text = "".join(traceback.format_exception(error))
    type_name = f"{type(error).__module__}.{type(error).__qualname__}"
    try:
        message = str(error)
    except Exception:
        message = ""
    whole: bytes | None
    try:
        whole = dumps(error, main_by_reference=True)
    except BaseException:
        whole = None
    parts: bytes | None = None
    try:
        state = dict(getattr(error, "__dict__", {}))
    except BaseException:
        state = {}
    # its own args and attributes if they pickle; else its message stands in for the args
    # (an argument that does not pickle must not cost the caller the type), and without the
    # attributes if even they do not pickle
    tries: tuple[tuple[tuple[Any, ...], dict[str, Any]], ...] = (
        (error.args, state),
        (error.args, {}),
        ((message,), state),
        ((message,), {}),
    )
    for args, attributes in tries:
        try:
            parts = dumps((type(error), args, attributes), main_by_reference=True)
        except BaseException:
            continue
        break
    return dumps((whole, parts, type_name, message, tb_text))


def load_exception(blob: bytes | memoryview) -> BaseException:
    """Re-create a task's exception in the caller, the worker's traceback as ``__cause__``."""
    whole, parts, type_name, message, tb_text = loads(blob)
    error: BaseException | None = None
    if whole is not None:
        try:
            error = loads(whole)
        except BaseException:
            error = None
    if error is None and parts is not None:
        try:
            cls, args, state = loads(parts)
            error = cls.__new__(cls, *args)
            # object.__setattr__: a frozen dataclass exception refuses plain assignment
            object.__setattr__(error, "args", args)
            getattr(error, "__dict__", {}).update(state)
        except BaseException:
            error = None
    if not isinstance(error, BaseException):
        error = RemoteTaskError(type_name, message, tb_text)
    object.__setattr__(error, "__cause__", RemoteTraceback(tb_text))
    return error
