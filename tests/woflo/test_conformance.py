"""Every built-in runner passes the conformance suite plugin authors use (woflo.testing)."""

from woflo.testing import runner_conformance
from woflo_plugins.multiprocess import MultiprocessTaskRun
from woflo_plugins.sequential import SequentialTaskRun

TestSequentialConformance = runner_conformance(SequentialTaskRun)
TestMultiprocessConformance = runner_conformance(MultiprocessTaskRun)
