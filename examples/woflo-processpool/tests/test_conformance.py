"""woflo's runner conformance suite, against ProcessPoolTaskRun: one line."""

from woflo_processpool import ProcessPoolTaskRun

from woflo.testing import runner_conformance

TestProcessPoolTaskRun = runner_conformance(ProcessPoolTaskRun)
