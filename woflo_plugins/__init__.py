"""woflo's built-in plugins, each declared in the ``woflo`` entry-point group like any other.

* :mod:`woflo_plugins.sequential`: ``SequentialTaskRun``, in the calling thread.
* :mod:`woflo_plugins.retries`: ``retries=`` and ``retry_sleep_time=``.
* :mod:`woflo_plugins.logging`: structlog events for every run's lifecycle.
* :mod:`woflo_plugins.history`: every run recorded in :mod:`woflo.history`'s SQLite store.
* :mod:`woflo_plugins.multiprocess`, :mod:`woflo_plugins.dask`, :mod:`woflo_plugins.timeouts`,
  :mod:`woflo_plugins.metrics`: the default runner, the Dask runner, ``timeout=``, counters.
"""
