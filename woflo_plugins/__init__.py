"""woflo's built-in plugins, each declared in the ``woflo`` entry-point group like any other.

* :mod:`woflo_plugins.sequential`: ``SequentialTaskRun``, in the calling thread.
* :mod:`woflo_plugins.retries`: ``retries=`` and ``retry_sleep_time=``.
* :mod:`woflo_plugins.logging`: structlog events for every run's lifecycle.
"""
