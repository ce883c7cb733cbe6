"""woflo's runner conformance suite, against ThreadTaskRun: one line."""

from woflo_threads import ThreadTaskRun

from woflo.testing import runner_conformance

TestThreadTaskRun = runner_conformance(ThreadTaskRun)
