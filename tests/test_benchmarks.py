"""The benchmark script's --quick mode runs every workload (a smoke test: no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALWAYS = ["import", "overhead", "latency", "cold", "sleepers", "cpu", "stop", "retries", "memory"]


@pytest.mark.slow
def test_quick_benchmarks_run_every_workload(tmp_path: Path) -> None:
    output = tmp_path / "results.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    [ran] = [line for line in result.stdout.splitlines() if line.startswith("workloads run:")]
    workloads = ran.removeprefix("workloads run:").replace(" ", "").split(",")
    expected = {
        *ALWAYS,
        "logging",
        "forwarding",
        "fan-out",
        "map",
        "chain",
        "await",
        "pending",
        "cache",
    }
    assert expected <= set(workloads)
    table = output.read_text(encoding="utf-8")
    assert "| workload | system | median | ratio to woflo |" in table
    assert "Machine:" in table
    for name in ("woflo", "ProcessPoolExecutor", "multiprocessing.Pool"):
        assert f"| {name} |" in table
