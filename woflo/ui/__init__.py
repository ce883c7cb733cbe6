"""``woflo ui``: a local dashboard of the run history, served by the standard library.

A threaded :mod:`http.server` serves three files shipped in this package (``static/``: HTML,
CSS and JavaScript; no build step, no CDN, so it works offline) and a small read-only JSON API
over :mod:`woflo.history`:

=====================================  ==========================================================
``GET /api/status``                    the database, whether it exists, whether it holds runs
``GET /api/runs``                      runs, newest first: ``task``, ``state`` (repeatable),
                                       ``program``, ``since`` (seconds), ``limit`` (1-1000,
                                       default 100), ``offset``; answers ``{runs, limit,
                                       offset, next_offset}`` (``next_offset`` null at the end)
``GET /api/runs/<run_id>``             one run: every attempt, upstream and downstream run ids
``GET /api/tasks``                     the task names recorded
``GET /api/programs``                  program invocations, newest first (``limit``)
``GET /api/programs/<id>/timeline``    a program's runs and attempts, for the Gantt chart
=====================================  ==========================================================

Errors are JSON too (``{"error": "..."}``): 400 for a malformed query, 404 for an unknown run,
program or path, 405 for anything but GET and HEAD, 503 when the history cannot be read; never
a traceback page. It binds to ``127.0.0.1`` unless told otherwise.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from woflo._types import RunState

__all__ = ["DEFAULT_PORT", "BadRequest", "make_server", "serve"]

DEFAULT_PORT = 8471
MAX_LIMIT = 1000
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
"""Every file the server sends, by path: no other path reaches the file system."""
_STATES = {state.value for state in RunState} | {"cached"}
"""What ``state`` may ask for: every run state, and ``cached`` (as the history records it)."""


class BadRequest(ValueError):
    """A query the API cannot answer as asked (400), saying what would be right."""


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"{name} is given {len(values)} times; give it once")
    return values[0]


def _whole(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    text = _one(query, name)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise BadRequest(f"{name} takes a whole number from {low} to {high}, not {text!r}")
    return int(text)


def _runs(query: dict[str, list[str]]) -> dict[str, Any]:
    from woflo import history

    unknown = set(query) - {"task", "state", "program", "since", "limit", "offset"}
    if unknown:
        raise BadRequest(
            f"unknown parameter {sorted(unknown)[0]!r}; known: task, state, program, since, "
            "limit, offset"
        )
    states = [s for s in query.get("state", []) if s]
    for state in states:
        if state not in _STATES:
            raise BadRequest(f"state takes one of {', '.join(sorted(_STATES))}, not {state!r}")
    limit = _whole(query, "limit", 100, 1, MAX_LIMIT)
    offset = _whole(query, "offset", 0, 0, 10**12)
    since_text = _one(query, "since")
    since = None
    if since_text:
        try:
            since = float(since_text)
        except ValueError:
            since = -1.0
        if not since >= 0 or since == float("inf"):
            raise BadRequest(f"since takes seconds >= 0, not {since_text!r}")
    rows = history.runs(
        task=_one(query, "task") or None,
        state=states or None,
        program=_one(query, "program") or None,
        since=since,
        limit=limit + 1,  # (one more: whether there is a next page)
        offset=offset,
    )
    more = len(rows) > limit
    return {
        "runs": rows[:limit],
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if more else None,
    }


def _status() -> dict[str, Any]:
    from woflo import history

    path = history.database_path()
    exists = path.exists()
    has_runs = bool(exists and history.runs(limit=1))
    return {"database": str(path), "exists": exists, "has_runs": has_runs}


def _tasks() -> dict[str, Any]:
    from woflo import history

    return {"tasks": history.tasks()}


def _answer(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
    """The status and JSON body for an API path."""
    from woflo import history

    parts = [urllib.parse.unquote(p) for p in path.split("/")[2:]]
    if parts == ["status"]:
        return 200, _status()
    if parts == ["runs"]:
        return 200, _runs(query)
    if parts == ["tasks"]:
        return 200, _tasks()
    if parts == ["programs"]:
        return 200, {"programs": history.programs(limit=_whole(query, "limit", 50, 1, MAX_LIMIT))}
    if len(parts) == 2 and parts[0] == "runs" and parts[1]:
        found = history.run(parts[1])
        if found is None:
            return 404, {"error": f"no run {parts[1]!r} in the history"}
        return 200, found
    if len(parts) == 3 and parts[0] == "programs" and parts[2] == "timeline":
        found = history.timeline(parts[1])
        if found is None:
            return 404, {"error": f"no program {parts[1]!r} in the history"}
        return 200, found
    return 404, {"error": f"no such API path: {path}"}


class _Handler(BaseHTTPRequestHandler):
    server_version = "woflo-ui"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _not_allowed(self) -> None:
        self.close_connection = True  # (its body, unread, must not be taken for a request)
        self._send(405, {"error": "the dashboard is read-only: GET and HEAD only"}, True)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, an unknown method, a URL too
        long) as JSON too."""
        self.close_connection = True
        if code == 501:  # (a method http.server does not know)
            code, message = 405, "the dashboard is read-only: GET and HEAD only"
        try:
            body = {"error": message or HTTPStatus(code).phrase}
            self._send(code, body, getattr(self, "command", "") != "HEAD")
        except (OSError, ValueError):
            pass

    def _host_allowed(self) -> bool:
        """On a loopback address, only requests naming this machine: a web page whose name
        was rebound to 127.0.0.1 (DNS rebinding) must not read the history."""
        if not self.server.loopback:  # type: ignore[attr-defined]
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            name = host[1 : host.find("]")] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in ("127.0.0.1", "localhost", "::1") or name.startswith("127.")

    def _respond(self, *, send_body: bool) -> None:
        from woflo import history

        try:
            if not self._host_allowed():
                self.close_connection = True
                self._send(
                    403, {"error": "this dashboard answers to 127.0.0.1 and localhost"}, send_body
                )
                return
            split = urllib.parse.urlsplit(self.path)
            path = split.path
            if path in _STATIC:
                name, kind = _STATIC[path]
                body = resources.files("woflo.ui").joinpath("static", name).read_bytes()
                self._send_bytes(200, body, kind, send_body)
                return
            if not path.startswith("/api/"):
                self._send(404, {"error": f"no such page: {path}"}, send_body)
                return
            try:
                query = urllib.parse.parse_qs(
                    split.query, keep_blank_values=True, strict_parsing=bool(split.query)
                )
            except ValueError as exc:
                raise BadRequest(f"malformed query string: {exc}") from None
            status, answer = _answer(path, query)
            self._send(status, answer, send_body)
        except BadRequest as exc:
            self._send(400, {"error": str(exc)}, send_body)
        except history.HistoryError as exc:
            self._send(503, {"error": str(exc)}, send_body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # (the browser went away)
        except Exception as exc:  # never a traceback page
            self._send(500, {"error": f"{type(exc).__name__}: {exc}"}, send_body)

    def _send(self, status: int, answer: Any, send_body: bool) -> None:
        body = json.dumps(answer).encode()
        self._send_bytes(status, body, "application/json", send_body)

    def _send_bytes(self, status: int, body: bytes, kind: str, send_body: bool) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:",
        )
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:  # type: ignore[attr-defined]
            sys.stderr.write(f"woflo ui: {self.address_string()} {format % args}\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    verbose = False
    loopback = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """A server of the dashboard bound to ``host:port`` (``port=0``: a free one), not yet
    serving: call ``serve_forever()`` (and ``shutdown()``), or use :func:`serve`."""
    import ipaddress

    bare = host.strip("[]")
    kind = _Server6 if ":" in bare else _Server
    server = kind((bare, port), _Handler)
    try:
        server.loopback = bare == "localhost" or ipaddress.ip_address(bare).is_loopback
    except ValueError:
        server.loopback = False
    return server


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    ready: threading.Event | None = None,
    verbose: bool = False,
) -> None:
    """Serve the dashboard until interrupted (Ctrl-C)."""
    server = make_server(host, port)
    server.verbose = verbose  # type: ignore[attr-defined]
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"woflo ui: serving http://{shown}:{bound_port}/ (Ctrl-C to stop)", flush=True)
    if ready is not None:
        ready.set()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
