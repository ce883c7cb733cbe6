"""The entry points of one group, as ``importlib.metadata.entry_points(group=...)`` finds them,
without importing ``importlib.metadata`` where the installed distributions are laid out the
plain way: its import takes 20-30 ms (it imports ``email``, ``zipfile``, ``pathlib``, ``csv``),
about a sixth of a script that calls one task, for a scan that takes 1-2 ms.

The plain way: the only finders of distributions on ``sys.meta_path`` are the standard
``PathFinder`` and the ``importlib_metadata`` backport's (it reads the same directories, and
``importlib.metadata`` drops its duplicates), and every entry of ``sys.path`` is a directory
(or missing, or ``""``: the current directory), none a zip archive or an ``.egg``.
``importlib.metadata`` then finds the distributions as the ``*.dist-info`` and ``*.egg-info``
directories of those directories, in ``sys.path`` order, the first of each normalized name
winning, and reads the entry points of each from its ``entry_points.txt`` (the format of the
PyPA's entry points specification); so does this module, in the same order, and takes each
distribution's name and version from its metadata file when that is written the plain way
(a missing header is ``None``, as ``metadata.get()`` answers). Anything else, and any file it
cannot read as that module would, is left to ``importlib.metadata`` itself (the same answer,
or the same error).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Found", "entry_points"]

_ENTRY = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")
_SEPARATORS = re.compile(r"[-_.]+")
_HEADER = re.compile(r"([!-9;-~]+):")  # (the email parser's header name: printable ASCII)
_ODD_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # (str.splitlines')


class Found:
    """One entry point: its ``name``, its ``value`` (``module:attribute``), and the name and
    version of the distribution that declares it (``None`` where that is unknown)."""

    __slots__ = ("_load", "distribution", "name", "value", "version")

    def __init__(
        self,
        name: str,
        value: str,
        distribution: str | None,
        version: str | None,
        load: Callable[[], Any] | None = None,
    ) -> None:
        self.name = name
        self.value = value
        self.distribution = distribution
        self.version = version
        self._load = load

    def load(self) -> Any:
        """Import the module the value names and return the attribute it names (if any)."""
        if self._load is not None:
            return self._load()
        match = _ENTRY.match(self.value)
        if match is None:
            raise ValueError(f"{self.value!r} is not an entry point's value (module:attribute)")
        import importlib

        found: Any = importlib.import_module(match.group("module"))
        for attribute in filter(None, (match.group("attr") or "").split(".")):
            found = getattr(found, attribute)
        return found

    def __repr__(self) -> str:
        return f"Found({self.name!r}, {self.value!r}, {self.distribution!r}, {self.version!r})"


def entry_points(group: str) -> list[Found]:
    """The entry points of ``group`` of every installed distribution, in the order and with
    the choices ``importlib.metadata.entry_points(group=group)`` makes.

    A malformed ``entry_points.txt`` raises what ``importlib.metadata`` raises for it.
    """
    found = _plain(group)
    return found if found is not None else _from_importlib(group)


class _HandOver(Exception):
    """The layout, or a file, is not the plain one: importlib.metadata answers."""


def _plain(group: str) -> list[Found] | None:
    """The entry points, read directly; ``None`` where the layout or a file is not the plain
    one (importlib.metadata then answers)."""
    try:
        return _scan(group)
    except _HandOver:
        return None


def _scan(group: str) -> list[Found]:
    from importlib.machinery import PathFinder

    if PathFinder not in sys.meta_path:
        raise _HandOver  # (importlib.metadata finds nothing then, or another finder's)
    for finder in sys.meta_path:
        if finder is PathFinder or getattr(finder, "find_distributions", None) is None:
            continue
        kind = type(finder)
        if (kind.__module__, kind.__name__) != ("importlib_metadata", "MetadataPathFinder"):
            raise _HandOver  # (the backport's, which dask imports, reads sys.path the same way)
    found: list[Found] = []
    for directory in _distributions():
        text = _read(directory, "entry_points.txt")
        pairs = _pairs(text, group) if text else ()
        if pairs:
            name, version = _name_and_version(directory)
            found.extend(Found(n, v, name, version) for n, v in pairs)
    return found


def _distributions() -> Iterator[str]:
    """The ``*.dist-info`` and ``*.egg-info`` directories on ``sys.path``, in its order, the
    first of each normalized name only."""
    seen: set[str] = set()
    for entry in sys.path:
        if not isinstance(entry, str) or entry.lower().endswith(".egg"):
            raise _HandOver
        try:
            children = os.listdir(entry or ".")
        except NotADirectoryError:
            raise _HandOver from None  # a zip archive: importlib.metadata reads inside it
        except OSError:
            continue  # missing or unreadable: importlib.metadata finds nothing there either
        for child in children:
            stem, dot, extension = child.rpartition(".")
            if not dot or extension not in ("dist-info", "egg-info"):
                if child.lower().endswith((".dist-info", ".egg-info")):
                    raise _HandOver  # (an upper-case suffix: named by its metadata there)
                continue
            name = stem.partition("-")[0]
            if not name:
                raise _HandOver  # (named by its metadata there)
            normalized = _SEPARATORS.sub("_", name).lower()
            if normalized not in seen:
                seen.add(normalized)
                yield os.path.join(entry, child)


def _read(directory: str, filename: str) -> str:
    """The file's text; ``""`` where importlib.metadata reads no file."""
    try:
        with open(os.path.join(directory, filename), encoding="utf-8") as file:
            return file.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return ""
    except (OSError, ValueError):
        raise _HandOver from None  # (it raises: let it say so)


def _pairs(text: str, group: str) -> list[tuple[str, str]]:
    """``(name, value)`` of ``group``'s section(s) (:class:`_HandOver` for a line that
    importlib.metadata cannot parse: it raises, and says so)."""
    section = None
    pairs: list[tuple[str, str]] = []
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if section is None:
            continue
        name, equals, value = line.partition("=")
        if not equals:
            raise _HandOver
        if section == group:
            pairs.append((name.strip(), value.strip()))
    return pairs


def _name_and_version(directory: str) -> tuple[str | None, str | None]:
    """The ``Name`` and ``Version`` headers of the distribution's metadata (``METADATA``, else
    ``PKG-INFO``), the first of each, as the ``email`` parser reads them (:class:`_HandOver`
    for a file not written the plain way: every header on a line of its own, its name
    printable ASCII, ``\\n`` line ends)."""
    text = _read(directory, "METADATA") or _read(directory, "PKG-INFO")
    head = text.partition("\n\n")[0]
    if head.startswith(("\ufeff", "From ")) or _ODD_BREAKS.search(head):
        raise _HandOver
    headers: dict[str, str] = {}
    kept = False  # (the line before was the Name or Version kept)
    for line in head.split("\n"):
        if not line:
            break  # (the end of the headers: a file that starts with a blank line has none)
        if line[0] in " \t":
            if kept:
                raise _HandOver  # (a folded Name or Version)
            continue
        match = _HEADER.match(line)
        if match is None:
            raise _HandOver
        key = match.group(1).lower()
        kept = key in ("name", "version") and key not in headers
        if kept:
            headers[key] = line[match.end() :].lstrip(" \t")
    return headers.get("name"), headers.get("version")


def _from_importlib(group: str) -> list[Found]:
    from importlib.metadata import entry_points as read

    known: dict[int, tuple[str | None, str | None]] = {}  # (each metadata parsed once)
    found = []
    for ep in read(group=group):
        dist = ep.dist
        if dist is None:
            name = version = None
        else:
            if id(dist) not in known:
                metadata: Any = dist.metadata  # (an email message: .get, None when missing,
                # where [] raises on 3.14)
                known[id(dist)] = (metadata.get("Name"), metadata.get("Version"))
            name, version = known[id(dist)]
        found.append(Found(ep.name, ep.value, name, version, ep.load))
    return found
