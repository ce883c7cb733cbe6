"""woflo's own Dask ``LocalCluster``, run in a process of its own.

Started by :mod:`woflo_plugins.dask` with ``subprocess`` (an exec'd interpreter, like the
multiprocess runner's zygote), so that starting Dask's worker processes never re-imports the
caller's ``__main__``: a script that calls tasks at its top level with no
``if __name__ == "__main__":`` guard works on the Dask runner too. The caller sends the TLS
settings (``distributed.Security``, pickled) on standard input, this process prints the
scheduler's address on standard output, and keeps the cluster until its standard input ends
(the caller closed it, or died: on Linux the kernel also sends SIGTERM then).
"""

from __future__ import annotations

import pickle
import signal
import sys


def main() -> None:
    """Run the cluster: ``python -c 'from woflo_plugins.dask._cluster import main; main()'``."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    settings = pickle.load(sys.stdin.buffer)
    import distributed

    with distributed.LocalCluster(  # type: ignore[no-untyped-call]
        processes=True,
        host="127.0.0.1",
        protocol="tls://",
        security=settings["security"],
        scheduler_kwargs={
            "dashboard": settings["dashboard_address"] is not None,
            "dashboard_address": settings["dashboard_address"] or "127.0.0.1:0",
        },
        silence_logs=40,
    ) as cluster:
        sys.stdout.write(cluster.scheduler_address + "\n")
        sys.stdout.flush()
        try:
            sys.stdin.buffer.read()  # until the caller closes it or dies
        except (OSError, KeyboardInterrupt):
            pass
