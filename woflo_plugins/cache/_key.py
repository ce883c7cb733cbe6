"""Cache keys: a stable hash of the task's identity, its source code and its arguments.

The variables the function closes over are part of it when they are plain values (numbers,
strings, bytes, tuples and frozensets of them) or functions (by their code): a task made by a
factory, ``make_scaler(2)`` and ``make_scaler(3)``, has keys of its own. Other objects it
closes over (a list it appends to, a client) and the globals it reads are not.

Stable means equal across processes and program runs for equal arguments: a ``dict`` or a
``set`` hashes the same whatever the order of its items (``PYTHONHASHSEED`` changes a set's
order, and so its pickle), numbers and strings by value; anything else by its pickle.
"""

from __future__ import annotations

import hashlib
import inspect
import marshal
import pickle
import struct
from collections.abc import Callable
from typing import Any

from woflo.errors import ArgumentNotPicklable

__all__ = ["CacheKeyError", "arguments_by_name", "default_key", "user_key"]

_VERSION = b"woflo-cache-key-1\0"


class CacheKeyError(ArgumentNotPicklable):
    """A run's cache key cannot be made (an argument that cannot be pickled, say): raised by
    the call, naming the argument and what to do instead."""


_code_digests: dict[Callable[..., Any], bytes] = {}
_signatures: dict[Callable[..., Any], inspect.Signature] = {}


def _identity(fn: Callable[..., Any]) -> bytes:
    return f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', repr(fn))}\0".encode()


def _code_digest(fn: Callable[..., Any]) -> bytes:
    """The hash of ``fn``'s identity and source (its code object's, without source)."""
    digest = _code_digests.get(fn)
    if digest is None:
        code = hashlib.sha256(_identity(fn))
        try:
            code.update(inspect.getsource(fn).encode())
        except (OSError, TypeError):  # (no source: defined in a REPL or by exec)
            inner = getattr(fn, "__code__", None)
            code.update(marshal.dumps(inner) if inner is not None else repr(fn).encode())
        digest = _code_digests[fn] = code.digest()
    return digest


def arguments_by_name(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any] | None:
    """The call's arguments by parameter name, defaults included (``f(1)`` and ``f(x=1)``
    alike); ``None`` where they do not bind (the call itself is wrong: it fails when it runs)."""
    try:
        signature = _signatures.get(fn)
        if signature is None:
            signature = _signatures[fn] = inspect.signature(fn)
        bound = signature.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return None
    bound.apply_defaults()
    return bound.arguments


def default_key(
    task_name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    """The key of calling ``fn`` with these arguments: its code and the arguments by name."""
    arguments = arguments_by_name(fn, args, kwargs)
    if arguments is None:
        arguments = {f"*{i}": value for i, value in enumerate(args)} | kwargs
    digest = hashlib.sha256(_VERSION)
    digest.update(task_name.encode() + b"\0")
    digest.update(_code_digest(fn))
    cells = getattr(fn, "__closure__", None) or ()
    names = getattr(getattr(fn, "__code__", None), "co_freevars", ())
    for name, cell in zip(names, cells, strict=False):  # (what a closure closes over)
        try:
            value = cell.cell_contents
        except ValueError:  # (not bound yet)
            continue
        if _plain(value):
            digest.update(b"closure " + name.encode() + b"=")
            _feed(digest, value)
        elif callable(value) and hasattr(value, "__code__"):
            digest.update(b"closure " + name.encode() + b"=" + _code_digest(value))
    for name, value in arguments.items():
        digest.update(name.encode() + b"=")
        try:
            _feed(digest, value)
        except Exception as exc:
            raise CacheKeyError(
                f"task {task_name!r}: cache key: argument {name!r} ({type(value).__name__}) "
                f"cannot be pickled ({exc}); give the task cache_key=... to key on something "
                "else (cache_key=lambda path, **_: path)"
            ) from None
    return digest.hexdigest()


def user_key(
    task_name: str,
    fn: Callable[..., Any],
    key_fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> str:
    """The key ``cache_key`` chooses, within the task's own keys (its name, module and
    qualified name; not its source: put a version in the key to invalidate). It is given the call's
    arguments by name, defaults included (so ``lambda path, **_: path`` works however the
    call passed ``path``); to a task taking ``*args`` or positional-only ones, as called."""
    arguments = arguments_by_name(fn, args, kwargs)
    plain = arguments is not None and all(
        parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        for parameter in _signatures[fn].parameters.values()
    )
    try:
        chosen = key_fn(**arguments) if plain and arguments else key_fn(*args, **kwargs)
    except Exception as exc:
        given = ", ".join(arguments) if plain and arguments else "the call's arguments"
        raise CacheKeyError(
            f"task {task_name!r}: its cache_key {getattr(key_fn, '__qualname__', key_fn)!r} "
            f"failed, given {given}: {type(exc).__name__}: {exc} (it is called with the "
            "task's arguments by name: lambda path, **_: path)"
        ) from exc
    digest = hashlib.sha256(_VERSION + b"user\0" + task_name.encode() + b"\0" + _identity(fn))
    try:
        _feed(digest, chosen)
    except Exception as exc:
        raise CacheKeyError(
            f"task {task_name!r}: its cache_key returned {type(chosen).__name__}, which cannot "
            f"be pickled ({exc}); return a string, a number or a tuple of them"
        ) from None
    return digest.hexdigest()


_SCALARS = (type(None), bool, int, float, complex)


def _plain(value: Any) -> bool:
    """A value that keys a closure: a number, a string, bytes, or a tuple or frozenset of
    them (not a list it appends to, a client, a lock: those change or do not pickle)."""
    kind = type(value)
    if kind in _SCALARS or kind is str or kind is bytes:
        return True
    if kind is tuple or kind is frozenset:
        return all(_plain(item) for item in value)
    return False


def _feed(digest: Any, value: Any) -> None:
    kind = type(value)
    if kind in _SCALARS:
        digest.update(f"{kind.__name__}:{value!r};".encode())
    elif kind is str:
        data = value.encode("utf-8", "surrogatepass")
        digest.update(b"s" + struct.pack("<Q", len(data)) + data)
    elif kind is bytes:
        digest.update(b"b" + struct.pack("<Q", len(value)) + value)
    elif kind is tuple or kind is list:
        digest.update(b"t(" if kind is tuple else b"l(")
        for item in value:
            _feed(digest, item)
        digest.update(b")")
    elif kind is dict:
        digest.update(b"d(")
        for part in sorted(_part(key) + b":" + _part(item) for key, item in value.items()):
            digest.update(part + b",")
        digest.update(b")")
    elif kind is set or kind is frozenset:
        digest.update(b"S(")
        for part in sorted(_part(item) for item in value):
            digest.update(part + b",")
        digest.update(b")")
    else:
        digest.update(b"p" + pickle.dumps(value, protocol=5))


def _part(value: Any) -> bytes:
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.digest()
