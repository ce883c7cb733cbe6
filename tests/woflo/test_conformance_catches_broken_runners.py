"""The conformance suite is strict: deliberately broken runners fail it, case by case.

Each broken runner differs from a correct thread runner in one way; the suite runs against
each (in a pytest subprocess, through ``pytester``): the cases that check that contract fail,
while the correct runner passes them all. (A breach may fail other cases too, depending on
timing: a second report of an attempt can come before or after the run is seen to end.)
"""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]

RUNNERS = """
import threading

from woflo import BaseTaskRun, Outcome, TaskCall
from woflo.testing import runner_conformance


class Correct(BaseTaskRun):
    name = "correct"

    def start_attempt(self, call):
        threading.Thread(target=self.work, args=(call,), daemon=True).start()

    def work(self, call):
        self.report_started(call)
        self.report_finished(call, self.execute(call))


class DropsKeywords(Correct):
    name = "drops-keywords"

    def work(self, call):
        self.report_started(call)
        call2 = TaskCall(call.task_name, call.run_id, call.attempt, call.fn, call.args, {})
        outcome = self.execute(call2)
        self.report_finished(call, outcome)


class ReportsTwice(Correct):
    name = "reports-twice"

    def work(self, call):
        self.report_started(call)
        outcome = self.execute(call)
        self.report_finished(call, outcome)
        self.report_finished(call, outcome)


class ZeroDuration(Correct):
    name = "zero-duration"

    def work(self, call):
        self.report_started(call)
        outcome = self.execute(call)
        self.report_finished(call, Outcome(value=outcome.value, error=outcome.error))


class NeverStarts(Correct):
    name = "never-starts"

    def work(self, call):
        self.report_finished(call, self.execute(call))


TestCorrect = runner_conformance(Correct)
TestDropsKeywords = runner_conformance(DropsKeywords)
TestReportsTwice = runner_conformance(ReportsTwice)
TestZeroDuration = runner_conformance(ZeroDuration)
TestNeverStarts = runner_conformance(NeverStarts)
"""

# the cases that must fail for each broken runner
EXPECTED_FAILURES = {
    "DropsKeywords": {"test_passes_every_argument"},
    "ReportsTwice": {"test_each_attempt_is_reported_once_with_its_duration"},
    "ZeroDuration": {
        "test_returns_the_value",
        "test_reraises_the_task_exception_with_its_traceback",
        "test_retries_compose_with_the_runner",
        "test_a_failed_run_fires_the_hooks_in_order",
        "test_each_attempt_is_reported_once_with_its_duration",
    },
    "NeverStarts": {
        "test_returns_the_value",
        "test_reraises_the_task_exception_with_its_traceback",
        "test_retries_compose_with_the_runner",
        "test_a_failed_run_fires_the_hooks_in_order",
        "test_each_attempt_is_reported_once_with_its_duration",
    },
}
CASES = sorted({"test_passes_every_argument"}.union(*EXPECTED_FAILURES.values()))


@pytest.mark.slow
def test_each_broken_runner_fails_exactly_the_cases_that_check_its_breach(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_broken_runners=RUNNERS)
    selection = " or ".join(CASES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "-k", selection)
    outcomes: dict[tuple[str, str], str] = {}
    for line in result.outlines:
        match = re.match(r"^(PASSED|FAILED|ERROR) \S+::Test(\w+)::(\w+)", line)
        if match:
            outcomes[match[2], match[3]] = match[1]
    expected = {("Correct", case): "PASSED" for case in CASES} | {
        (runner, case): "FAILED"
        for runner, failing in EXPECTED_FAILURES.items()
        for case in failing
    }
    for (runner, case), outcome in expected.items():
        assert outcomes.get((runner, case)) == outcome, (
            f"{runner}.{case}: expected {outcome}, got {outcomes.get((runner, case))}\n"
            + "\n".join(result.outlines[-60:])
        )
