"""``woflo runs``: the run history from the shell (:mod:`woflo.history`)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d``, ``1w``: seconds (an argparse type)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"takes a duration such as 90s, 15m, 1h, 2d or 1w, not {text!r}"
        )
    return float(match[1]) * _UNITS[match[2] or "s"]


def positive(text: str) -> int:
    """A whole number >= 1 (an argparse type)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number >= 1, not {text!r}")
    return int(text)


def add_parser(commands: Any) -> None:
    """``woflo runs [--task ...] | show RUN_ID | prune``."""
    runs = commands.add_parser("runs", help="the runs woflo remembers, newest first")
    runs.add_argument("action", nargs="?", choices=["show", "prune"], help="show one run; prune")
    runs.add_argument("run_id", nargs="?", help="the run to show (with show)")
    runs.add_argument("--task", help="only this task's runs")
    runs.add_argument("--state", action="append", help="only runs in this state (repeatable)")
    runs.add_argument("--since", type=seconds, help="only runs created within (15m, 1h, 2d)")
    runs.add_argument("--limit", type=positive, default=50, help="at most this many (50)")
    runs.add_argument("--json", action="store_true", help="print JSON")
    runs.add_argument("--older-than", type=seconds, help="prune: runs created before (30d)")
    runs.add_argument("--keep", type=positive, help="prune: all but the newest N runs")


def main(args: argparse.Namespace) -> int:
    """Run ``woflo runs``; the exit status."""
    from woflo import history

    try:
        if args.action == "show":
            if not args.run_id:
                print("woflo runs show: which run? (woflo runs show RUN_ID)", file=sys.stderr)
                return 2
            found = history.run(args.run_id)
            if found is None:
                print(
                    f"woflo: no run {args.run_id!r} in {history.database_path()}", file=sys.stderr
                )
                return 1
            print(json.dumps(found, indent=2) if args.json else _detail(found))
            return 0
        if args.action == "prune":
            if args.older_than is None and args.keep is None:
                print("woflo runs prune: say --older-than 30d and/or --keep N", file=sys.stderr)
                return 2
            print(f"pruned {history.prune(older_than=args.older_than, keep=args.keep)} runs")
            return 0
        rows = history.runs(task=args.task, state=args.state, since=args.since, limit=args.limit)
    except history.HistoryError as exc:
        print(f"woflo: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else _table(rows))
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("RUN ID", "TASK", "STATE", "ATTEMPTS", "DURATION", "STARTED", "ERROR")
    lines = [
        (
            r["run_id"],
            r["task"],
            r["state"],
            str(r["attempts"]),
            _duration(r["duration"]),
            _local(r["created_at"]),
            r["error"] or "",
        )
        for r in rows
    ]
    if not lines:
        return "no runs recorded (yet)"
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    widths[-1] = 0
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [header, *lines])


def _detail(run: dict[str, Any]) -> str:
    program = run["program"]
    lines = [
        f"run {run['run_id']}  task {run['task']}  runner {run['runner']}",
        f"  state {run['state']} after {run['attempts']} attempt(s), {_duration(run['duration'])}",
        f"  created {_local(run['created_at'])}, ended {_local(run['ended_at']) or '-'}",
        f"  program: {' '.join(program['argv'] or [])} (pid {program['pid']} on {program['host']})",
    ]
    if run["error"]:
        lines.append(f"  error: {run['error']}")
    for attempt in run["attempts_detail"]:
        lines.append(
            f"  attempt {attempt['attempt']}: {attempt['outcome'] or 'running'} after "
            f"{_duration(attempt['duration'])}, started {_local(attempt['started_at'])}, "
            f"pid {attempt['pid'] or '?'}"
        )
        if attempt["error"]:
            lines.append(f"    error: {attempt['error']}")
        if attempt["traceback"]:
            lines.extend("    " + line for line in attempt["traceback"].rstrip().splitlines())
    return "\n".join(lines)


def _duration(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _local(iso: str | None) -> str:
    if iso is None:
        return ""
    import datetime

    return datetime.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
