"""``woflo`` on the command line: ``woflo plugins [--json] [--hook NAME]``, ``woflo runs ...``
(:mod:`woflo._cli_runs`), ``woflo cache ...`` (:mod:`woflo._cli_cache`), ``woflo ui``
(:mod:`woflo.ui`), ``woflo --version``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

JSON_SCHEMA_VERSION = 1


def _plugin_rows(hook: str | None) -> list[dict[str, Any]]:
    from woflo.plugins import get_plugin_system

    system = get_plugin_system()
    rows = []
    for info in system.infos.values():
        if hook is not None and hook not in info.hooks:
            continue
        rows.append(
            asdict(info)
            | {
                "hooks": list(info.hooks),
                "runners": list(info.runners),
                "options": list(info.options),
                "unavailable": {
                    name: reason
                    for name in info.runners
                    if (reason := _unavailable(system.runners[name])) is not None
                },
            }
        )
    return sorted(rows, key=lambda row: (not row["builtin"], row["name"]))


def _unavailable(runner: Any) -> str | None:
    from woflo.errors import WofloError

    try:
        runner.check_available()
    except WofloError as exc:
        return str(exc)
    return None


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no plugins loaded")
        return
    for row in rows:
        origin = "built-in" if row["builtin"] else "third-party"
        dist = (
            f"{row['distribution']} {row['version']}"
            if row["distribution"]
            else "(no distribution)"
        )
        print(f"{row['name']}  [{origin}]  {dist}  ({row['module']})")
        for label in ("runners", "options", "hooks"):
            if row[label]:
                print(f"    {label}: {', '.join(row[label])}")
        for runner, reason in row["unavailable"].items():
            print(f"    unavailable: {runner}: {reason}")


def _version_text() -> str:
    from woflo import __version__
    from woflo.plugins import get_plugin_system

    third = [i for i in get_plugin_system().infos.values() if not i.builtin]
    extra = "".join(f"\n  {i.name}: {i.distribution} {i.version}" for i in third)
    return f"woflo {__version__}" + (f"\nthird-party plugins:{extra}" if third else "")


def _port(text: str) -> int:
    if not text.strip().isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"takes a port number from 0 to 65535, not {text!r}")
    return int(text)


def _ui(args: argparse.Namespace) -> int:
    import ipaddress

    from woflo import ui

    try:
        loopback = args.host == "localhost" or ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        print(
            f"woflo ui: warning: serving on {args.host}: anyone who can reach this port can "
            "read the run history (task arguments' errors, tracebacks, command lines)",
            file=sys.stderr,
        )
    try:
        ui.serve(args.host, args.port, verbose=args.verbose)
    except OSError as exc:
        print(f"woflo ui: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``woflo`` command; returns the exit status."""
    from woflo.errors import PluginError
    from woflo.hookspecs import hook_names

    parser = argparse.ArgumentParser(prog="woflo", description="woflo task orchestration")
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    commands = parser.add_subparsers(dest="command")
    plugins = commands.add_parser("plugins", help="list the plugins loaded and what they add")
    plugins.add_argument("--json", action="store_true", help="print JSON (a stable format)")
    plugins.add_argument("--hook", metavar="NAME", help="only plugins implementing this hook")
    from woflo import _cli_cache, _cli_runs

    _cli_runs.add_parser(commands)
    _cli_cache.add_parser(commands)
    ui = commands.add_parser("ui", help="serve a dashboard of the run history (local)")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    ui.add_argument("--port", type=_port, default=8471, help="port (8471; 0: a free one)")
    ui.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = parser.parse_args(argv)
    if args.command == "ui":
        return _ui(args)
    if args.command in ("runs", "cache"):
        try:
            command = _cli_runs.main if args.command == "runs" else _cli_cache.main
            return command(args)
        except BrokenPipeError:  # (| head): the reader has seen enough
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    try:
        if args.version:
            print(_version_text())
            return 0
        if args.command != "plugins":
            parser.print_help()
            return 2
        if args.hook is not None and args.hook not in hook_names():
            parser.error(f"unknown hook {args.hook!r}; hooks: {', '.join(hook_names())}")
        rows = _plugin_rows(args.hook)
    except PluginError as exc:
        print(f"woflo: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"version": JSON_SCHEMA_VERSION, "plugins": rows}, indent=2))
    else:
        _print_table(rows)
    return 0
