"""``woflo cache``: the result cache from the shell (:mod:`woflo.cache`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(commands: Any) -> None:
    """``woflo cache list|clear [--task NAME] [--json]``."""
    cache = commands.add_parser("cache", help="the values woflo keeps for cache=True tasks")
    cache.add_argument("action", choices=["list", "clear"], help="list the entries; clear them")
    cache.add_argument("--task", help="only this task's entries")
    cache.add_argument("--json", action="store_true", help="list: print JSON")


def main(args: argparse.Namespace) -> int:
    """Run ``woflo cache``; the exit status."""
    from woflo import cache

    try:
        if args.action == "clear":
            removed = cache.clear(task=args.task)
            print(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'}")
            return 0
        rows = cache.entries(task=args.task)
    except cache.CacheError as exc:
        print(f"woflo: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(
            f"no cache entries in {cache.directory()}"
            + (f" for task {args.task!r}" if args.task else "")
        )
    else:
        print(_table(rows))
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("KEY", "TASK", "SIZE", "CREATED", "EXPIRES", "LAST USED")
    lines = [
        (
            row["key"][:16],
            row["task"],
            _size(row["size"]),
            _local(row["created_at"]),
            _local(row["expires_at"]) or "never",
            _local(row["used_at"]),
        )
        for row in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *lines]
    )


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


def _local(iso: str | None) -> str:
    if iso is None:
        return ""
    import datetime

    return datetime.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
