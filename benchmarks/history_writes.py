"""The history writer's statements under a busy program: one row a statement (``executemany``)
against many rows a statement (what ``woflo_plugins.history`` does), while another thread runs
Python the whole time, as a program's threads do while its runs are written.

    python benchmarks/history_writes.py [ROWS]

Prints, for each way and round, the writer's CPU and wall time per row, and how fast the
busy thread went meanwhile (millions of loop turns a second: what the writes cost it).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from woflo_plugins.history import _store as store

COLUMNS = store.STATEMENTS[store.RUN_ENDED][1]


_TIMES = (1e9, 1e9 + 1, 1.0, None)  # created, ended, duration, error type; then a message


def _rows(prefix: str, n: int) -> list[tuple[object, ...]]:
    return [
        (f"{prefix}-{i:012d}", "program", "noop", "multiprocess", "completed", 1, *_TIMES, i)
        for i in range(n)
    ]


def one_a_statement(connection: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(store.statement(store.RUN_ENDED), rows)
    connection.execute("COMMIT")


def many_a_statement(connection: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    store.write(connection, {store.RUN_ENDED: rows})


def _busy(stop: threading.Event, turns: list[int]) -> None:
    count = 0
    while not stop.is_set():
        count += 1
    turns[0] = count


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory() as home:
        connection = sqlite3.connect(
            os.path.join(home, "runs.sqlite3"), isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            f"CREATE TABLE runs ({', '.join(COLUMNS)}, PRIMARY KEY (run_id)) WITHOUT ROWID"
        )
        ways: list[Callable[[sqlite3.Connection, list[tuple[object, ...]]], None]] = [
            one_a_statement,
            many_a_statement,
        ]
        for round_ in range(3):
            for way in ways if round_ % 2 == 0 else ways[::-1]:
                rows = _rows(f"{way.__name__}-{round_}", n)
                stop, turns = threading.Event(), [0]
                spinner = threading.Thread(target=_busy, args=(stop, turns))
                spinner.start()
                wall, cpu = time.perf_counter(), time.thread_time()
                way(connection, rows)
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                stop.set()
                spinner.join()
                print(
                    f"{way.__name__:17} writer cpu {cpu / n * 1e6:7.2f} µs/row, wall "
                    f"{wall / n * 1e6:8.2f} µs/row; busy thread {turns[0] / wall / 1e6:5.1f} M/s",
                    flush=True,
                )
        connection.close()


if __name__ == "__main__":
    main()
