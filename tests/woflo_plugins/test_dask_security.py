"""woflo's own Dask cluster (the one started when nothing was configured) is the program's
alone: loopback only, TLS with a certificate made for it, no dashboard unless asked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

import woflo_plugins.dask as woflo_dask  # noqa: E402
from woflo import task  # noqa: E402
from woflo.testing import add  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def implicit_client() -> Iterator[Any]:
    woflo_dask.reset()
    try:
        yield woflo_dask.get_client()
    finally:
        woflo_dask.reset()


def test_the_implicit_cluster_listens_on_loopback_over_tls_without_a_dashboard(
    implicit_client: Any,
) -> None:
    assert task(runner="dask")(add)(2, 3).get_result(timeout=60) == 5
    info = implicit_client.scheduler_info()
    assert info["address"].startswith("tls://127.0.0.1:")
    assert all(address.startswith("tls://127.0.0.1:") for address in info["workers"])
    assert implicit_client.dashboard_link is None or "127.0.0.1" in implicit_client.dashboard_link
    ports = info["services"]  # the scheduler's HTTP server (health, metrics): loopback only
    assert set(ports) <= {"dashboard"}
    listening = _listening_on(list(ports.values()))
    assert listening
    assert all(host in ("127.0.0.1", "::1") for host in listening)


def test_another_process_cannot_submit_work_to_it(implicit_client: Any) -> None:
    address = implicit_client.scheduler_info()["address"]
    intruder = textwrap.dedent(
        f"""
        import asyncio, os
        from distributed.comm import connect

        async def ask(address):
            comm = await connect(address, timeout=3)  # no certificate: ours is not trusted
            await comm.write({{"op": "identity"}})
            return await asyncio.wait_for(comm.read(), 5)

        for address in ({address!r}, {address.replace("tls://", "tcp://")!r}):
            try:
                print("answered", asyncio.run(asyncio.wait_for(ask(address), 10)), flush=True)
            except Exception as exc:
                print("refused", type(exc).__name__, flush=True)
        os._exit(0)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", intruder], capture_output=True, text=True, timeout=60
    )
    lines = [
        line for line in result.stdout.splitlines() if line.startswith(("answered", "refused"))
    ]
    assert len(lines) == 2, result.stdout + result.stderr
    assert all(line.startswith("refused") for line in lines), result.stdout + result.stderr


def _listening_on(ports: list[int]) -> set[str]:
    """The local addresses TCP sockets listen on for ``ports`` (from /proc/net/tcp)."""
    hosts = set()
    with open("/proc/net/tcp") as table:
        lines = table.read().splitlines()[1:]
    for line in lines:
        local, state = line.split()[1], line.split()[3]
        address, port = local.split(":")
        if state == "0A" and int(port, 16) in ports:  # LISTEN
            raw = bytes.fromhex(address)[::-1]
            hosts.add(".".join(str(b) for b in raw))
    return hosts


def test_a_script_without_a_main_guard_runs_on_the_implicit_cluster(tmp_path: Any) -> None:
    """The cluster runs in a process of its own: Dask's worker processes never re-import the
    script, so its top-level task calls run once, in the script."""
    script = tmp_path / "guardless.py"
    script.write_text(
        textwrap.dedent(
            """
            from woflo import task

            @task(runner="dask", retries=1)
            def double(x):
                return 2 * x

            print("top level", flush=True)
            print([double(i).get_result(timeout=60) for i in range(3)], flush=True)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["top level", "[0, 2, 4]"]
    assert "Nanny failed" not in result.stderr
