"""``woflo.remote``: what an out-of-process runner needs, used directly as such a runner would."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import textwrap
import threading
import traceback
from pathlib import Path
from typing import Any

import pytest

from woflo import RunState, TaskCall, remote, task
from woflo.errors import ArgumentNotPicklable, RemoteTaskError, RemoteTraceback
from woflo.runners import SequentialTaskRun
from woflo.testing import add, raise_value_error


class Custom(Exception):
    def __init__(self, code: int, *, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def test_a_remote_task_error_survives_a_pickle_round_trip_unchanged() -> None:
    error = RemoteTaskError("acme.Oops", "custom", "Traceback ...\nacme.Oops: custom\n")
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) == "acme.Oops: custom"
    assert (again.type_name, again.message, again.remote_traceback) == (
        "acme.Oops",
        "custom",
        "Traceback ...\nacme.Oops: custom\n",
    )
    assert str(pickle.loads(pickle.dumps(again))) == "acme.Oops: custom"


def test_an_exception_crosses_keeping_its_type_and_the_remote_traceback() -> None:
    try:
        raise Custom(7, reason="no disk")
    except Custom as exc:
        blob = remote.dump_exception(exc)
    error = remote.load_exception(blob)
    assert type(error) is Custom
    assert (error.code, error.reason, str(error)) == (7, "no disk", "7: no disk")
    assert isinstance(error.__cause__, RemoteTraceback)
    assert 'raise Custom(7, reason="no disk")' in str(error.__cause__)
    text = "".join(traceback.format_exception(error))
    assert "test_an_exception_crosses" in text


def test_an_exception_whose_class_cannot_be_loaded_arrives_as_a_stand_in(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from woflo import remote

            class Local(Exception):
                pass

            def make():
                class Hidden(Exception):  # by value: the caller has no such class either
                    pass
                return Hidden("from far away")

            sys.stdout.buffer.write(remote.dump_exception(make()))
            """
        )
    )
    blob = subprocess.run([sys.executable, str(script)], capture_output=True, check=True).stdout
    error = remote.load_exception(blob)
    assert isinstance(error, Exception)
    assert str(error).endswith("from far away")
    assert isinstance(error.__cause__, RemoteTraceback)


def test_a_task_defined_in_a_script_pickles_by_value(tmp_path: Path) -> None:
    """Plain pickle refuses a ``@task`` function of ``__main__`` (the name is the Task, not the
    function); the policy sends it by value, and another process can call it."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import pickle, sys
            from woflo import remote, task

            OFFSET = 40

            @task(runner="sequential")
            def shift(x):
                return x + OFFSET

            try:
                pickle.dumps(shift)
            except pickle.PicklingError:
                pass
            else:
                sys.exit("plain pickle took it")
            sys.stdout.buffer.write(remote.dumps(shift))
            """
        )
    )
    blob = subprocess.run([sys.executable, str(script)], capture_output=True, check=True).stdout
    loader = (
        "import sys; from woflo import remote; print(remote.loads(sys.stdin.buffer.read()).fn(2))"
    )
    out = subprocess.run(
        [sys.executable, "-c", loader], input=blob, capture_output=True, check=True
    ).stdout
    assert out.strip() == b"42"


def test_importable_things_pickle_by_reference_with_plain_pickle() -> None:
    blob = remote.dumps((add, Custom, {"x": 1}))
    assert b"cloudpickle" not in blob
    assert remote.loads(blob) == (add, Custom, {"x": 1})


def test_prepare_fails_at_the_call_naming_the_argument() -> None:
    runs: list[Any] = []

    class Remote(SequentialTaskRun):
        name = "remote-test"

        def prepare(self) -> None:
            remote.prepare(self)
            runs.append(self)

    t = task(runner=Remote)(add)
    with pytest.raises(ArgumentNotPicklable, match=r"argument 'b' of task 'add'"):
        t(1, b=threading.Lock())
    assert runs == []


def _logs_and_adds(a: int, b: int) -> int:
    import structlog

    logging.getLogger("acme.remote").warning("adding %s and %s", a, b)
    structlog.get_logger("acme.structured").warning("added", total=a + b)
    return a + b


def test_run_attempt_executes_through_the_plugins_and_brings_the_logs_back(
    structlog_reset: None,
) -> None:
    """What a runner on another process does, here in one: pack, run, unpack. (Caller and
    "other process" are one here: structlog is routed to the stdlib, so the attempt's events
    travel as stdlib records; the fixture undoes the configuration.)"""
    import structlog

    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    t = task(runner="sequential")(_logs_and_adds)
    run = t(2, 3)  # a run to pack attempts of (it ran here already: only its identity matters)
    call = TaskCall(t.name, run.run_id, 2, t.fn, (2, 3), {})
    attempt = remote.pack_attempt(run, call)
    assert pickle.loads(pickle.dumps(attempt)) == attempt  # plain data
    result = remote.run_attempt(attempt)
    assert result.ok
    assert len(result.records) >= 2
    for name in ("acme.remote", "acme.structured"):
        logging.getLogger(name).addHandler(Keep())
    try:
        outcome = result.outcome()
    finally:
        for name in ("acme.remote", "acme.structured"):
            logging.getLogger(name).handlers.clear()
    assert outcome.value == 5
    assert outcome.duration > 0
    plain = next(r for r in seen if r.name == "acme.remote")
    assert plain.getMessage() == "adding 2 and 3"
    assert (plain.task, plain.run_id, plain.attempt) == (t.name, run.run_id, 2)
    structured = next(r for r in seen if r.name == "acme.structured")
    assert structured.total == 5  # structlog's fields travel with it
    assert structured.run_id == run.run_id


def test_run_attempt_never_raises(structlog_reset: None) -> None:
    t = task(runner="sequential")(raise_value_error)
    run = t("boom")
    attempt = remote.pack_attempt(run, TaskCall(t.name, run.run_id, 1, t.fn, ("boom",), {}))
    result = remote.run_attempt(attempt)
    assert not result.ok
    error = result.outcome().error
    assert isinstance(error, ValueError)
    assert isinstance(error.__cause__, RemoteTraceback)
    broken = remote.RemoteAttempt(**{**_fields(attempt), "arguments": b"not a pickle"})
    failed = remote.run_attempt(broken)
    assert not failed.ok
    note = failed.outcome().error.__notes__  # type: ignore[union-attr]
    assert "raised while unpickling the arguments of task" in note[0]


def _fields(attempt: remote.RemoteAttempt) -> dict[str, Any]:
    return {name: getattr(attempt, name) for name in attempt.__slots__}


def test_a_bad_environment_variable_fails_the_call_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import woflo_plugins.multiprocess as mp
    from woflo.errors import OptionValueError

    mp.reset()
    try:
        for value in ("0", "-1", "abc", "1.5"):
            monkeypatch.setenv("WOFLO_MAX_WORKERS", value)
            with pytest.raises(OptionValueError, match=rf"WOFLO_MAX_WORKERS='{value}'.*>= 1"):
                task(add)(1, 2)
        monkeypatch.setenv("WOFLO_MAX_WORKERS", "2")
        monkeypatch.setenv("WOFLO_IDLE_TIMEOUT", "soon")
        with pytest.raises(OptionValueError, match=r"WOFLO_IDLE_TIMEOUT='soon'.*seconds"):
            task(add)(1, 2)
        monkeypatch.setenv("WOFLO_IDLE_TIMEOUT", "inf")  # no retirement: a valid setting
        run = task(add)(1, 2)
        assert run.get_result(timeout=30) == 3
        assert run.state is RunState.COMPLETED
    finally:
        mp.reset()


def test_an_infinite_pool_setting_means_no_limit() -> None:
    import woflo_plugins.multiprocess as mp

    mp.reset()
    try:
        mp.configure(idle_timeout=float("inf"), kill_grace=float("inf"))
        assert task(add)(2, 2).get_result(timeout=30) == 4
        assert task(add)(3, 3).get_result(timeout=30) == 6
    finally:
        mp.reset()
