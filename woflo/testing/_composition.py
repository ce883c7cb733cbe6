"""Conformance cases for runs that feed runs: the same semantics on every runner.

Dependencies (values in place, at any depth), upstream failure and stop propagation, ``map``
and groups as arguments, ``wait`` / ``as_completed``, done-callbacks, ``async def`` tasks and
``await``. A mixin of :class:`~woflo.testing.RunnerConformance`.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from woflo import (
    FIRST_COMPLETED,
    RunState,
    allow_failure,
    as_completed,
    unmapped,
    wait,
)
from woflo.errors import TaskStopped, UpstreamFailed, WaitTimeout
from woflo.testing._bodies import add, async_add, echo, raise_value_error
from woflo.testing._harness import WAIT, Harness

__all__ = ["CompositionCases"]


class CompositionCases(Harness):
    """Runs as arguments, groups, waiting on many runs, callbacks and asyncio."""

    def test_runs_as_arguments_feed_their_values_at_any_depth(self) -> None:
        t_add, t_echo = self.task_for(add), self.task_for(echo)
        a = t_add(1, 2)
        b = t_add(a, 10)
        nested = t_echo([a, (b,)], {"k": {"deep": [a]}}, key=b)
        assert b.get_result(timeout=WAIT) == 13
        assert nested.get_result(timeout=WAIT) == (([3, (13,)], {"k": {"deep": [3]}}), {"key": 13})
        self.assert_reports_sound()

    def test_a_dependent_waits_pending_for_its_upstream(self) -> None:
        upstream = self.blocking_run()
        dependent = self.start(self.task_for(echo), upstream, in_thread=True)
        assert dependent.state is RunState.PENDING
        assert dependent.attempts == 0
        assert not dependent.wait(0.05)
        self.release.touch()
        assert dependent.get_result(timeout=WAIT) == (("released",), {})
        assert dependent.attempts == 1

    def test_an_upstream_failure_ends_the_dependent_without_an_attempt(self) -> None:
        failing = self.task_for(raise_value_error)("upstream broke")
        run = self.start(self.task_for(add), failing, 1, in_thread=True)
        assert run.wait(WAIT)
        assert run.state is RunState.UPSTREAM_FAILED
        assert run.attempts == 0
        error = run.exception()
        assert isinstance(error, UpstreamFailed)
        assert error.run is failing
        assert isinstance(error.__cause__, ValueError)
        with pytest.raises(UpstreamFailed):
            run.get_result()
        assert self.recorder.hooks_of(run) == ["run_created", "run_finished"]
        # ... and it propagates: what depends on it fails the same way, naming its upstream
        after = self.start(self.task_for(add), run, 1, in_thread=True)
        assert after.wait(WAIT)
        assert after.state is RunState.UPSTREAM_FAILED
        assert after.exception().run is run  # type: ignore[union-attr]

    def test_allow_failure_passes_the_upstream_error_as_the_value(self) -> None:
        failing = self.task_for(raise_value_error)("tolerated")
        run = self.start(self.task_for(echo), allow_failure(failing), in_thread=True)
        (value,), _ = run.get_result(timeout=WAIT)
        assert isinstance(value, ValueError)
        assert "tolerated" in str(value)

    def test_stopping_an_upstream_ends_its_waiting_dependents(self) -> None:
        upstream = self.blocking_run()
        dependent = self.start(self.task_for(echo), upstream, in_thread=True)
        assert upstream.stop() is True
        assert dependent.wait(WAIT)
        assert dependent.state is RunState.UPSTREAM_FAILED
        assert isinstance(dependent.exception().__cause__, TaskStopped)  # type: ignore[union-attr]

    def test_stopping_a_dependent_leaves_its_upstream_alone(self) -> None:
        upstream = self.blocking_run()
        dependent = self.start(self.task_for(echo), upstream, in_thread=True)
        assert dependent.stop() is True
        assert dependent.state is RunState.STOPPED
        assert upstream.is_running()
        self.release.touch()
        assert upstream.get_result(timeout=WAIT) == "released"
        assert dependent.attempts == 0

    def test_map_and_a_group_as_an_argument(self) -> None:
        t_add = self.task_for(add)
        group = t_add.map([1, 2, 3], unmapped(10))
        assert len(group) == 3
        assert group.get_result(timeout=WAIT) == [11, 12, 13]
        assert not group.is_running()
        total = self.start(self.task_for(echo), group, in_thread=True)
        assert total.get_result(timeout=WAIT) == (([11, 12, 13],), {})
        chained = t_add.map(group, [100, 200, 300])  # items may be runs
        assert chained.get_result(timeout=WAIT) == [111, 212, 313]
        with pytest.raises(ValueError, match="different lengths"):
            t_add.map([1, 2], [1])

    def test_wait_and_as_completed_over_runs(self) -> None:
        t_add = self.task_for(add)
        runs = [t_add(i, i) for i in range(4)]
        done, not_done = wait(runs, timeout=WAIT)
        assert (done, not_done) == (set(runs), set())
        assert sorted(r.get_result() for r in as_completed(runs, timeout=WAIT)) == [0, 2, 4, 6]
        held = self.blocking_run()
        quick = t_add(1, 1)
        done, not_done = wait([held, quick], timeout=WAIT, return_when=FIRST_COMPLETED)
        assert quick in done
        assert held in not_done
        with pytest.raises(WaitTimeout):
            list(as_completed([held], timeout=0.05))
        self.release.touch()
        assert [r.get_result() for r in as_completed([held], timeout=WAIT)] == ["released"]

    def test_done_callbacks(self) -> None:
        called = threading.Event()
        seen: list[Any] = []

        def record(run: Any) -> None:
            seen.append((run, run.state))
            called.set()

        run = self.task_for(add)(1, 1)
        run.add_done_callback(record)
        assert called.wait(WAIT)
        assert seen == [(run, RunState.COMPLETED)]
        seen.clear()
        run.add_done_callback(record)  # already final: called at once, here
        assert seen == [(run, RunState.COMPLETED)]

        def broken(_run: Any) -> None:
            raise RuntimeError("a callback that raises")

        run.add_done_callback(broken)
        assert any("a callback that raises" in str(e) for e in run.hook_errors)
        assert run.state is RunState.COMPLETED
        assert run.get_result() == 2

    def test_async_def_tasks_and_awaiting_runs(self) -> None:
        import asyncio

        t_async = self.task_for(async_add)
        t_add = self.task_for(add)

        async def main() -> list[Any]:
            first = await t_async(1, 2)
            both = await asyncio.gather(t_async(first, 1), t_add(2, 2))
            return [first, *both]

        assert asyncio.run(main()) == [3, 4, 4]
        run = t_async(5, 5)
        assert run.get_result(timeout=WAIT) == 10
        assert run.state is RunState.COMPLETED
