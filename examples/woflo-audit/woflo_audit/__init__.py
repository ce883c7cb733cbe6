"""Audit log: one JSON line per finished run, appended to ``$WOFLO_AUDIT_FILE``."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from woflo import BaseTaskRun, hookimpl

__version__ = "0.1.0"

_lock = threading.Lock()


@hookimpl
def woflo_run_finished(run: BaseTaskRun[Any]) -> None:
    path = os.environ.get("WOFLO_AUDIT_FILE")
    if not path:
        return
    error = run.exception()
    line = json.dumps(
        {
            "task": run.task.name,
            "run_id": run.run_id,
            "state": run.state.value,
            "attempts": run.attempts,
            "duration": round(run.duration, 6),
            "error": None if error is None else repr(error),
        }
    )
    with _lock, open(path, "a", encoding="utf-8") as audit:
        audit.write(line + "\n")
