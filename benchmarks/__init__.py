"""Benchmarks of aiotaskq: ``python -m benchmarks`` (see ``docs/benchmarks.md``).

Layout, so the harness can grow to cover peer systems with the same workloads:

- ``adapter.py``: the ``System`` interface every queue system implements, and the
  ``Probe`` its benchmark tasks report to (the same probe for every system).
- ``adapter_aiotaskq.py``: aiotaskq as the first system.
- ``workloads.py``: the workloads (latency, drain, memory, io), run as a producer in
  one subprocess per repetition, with the worker in a subprocess of its own
  (``worker.py``). ``run.py`` is the entry point of that per-repetition subprocess.
- ``report.py``: machine details, medians, the markdown table and ``docs/benchmarks.md``.
- ``__main__.py``: the command line; starts a private ``redis-server`` and runs
  every repetition in a fresh subprocess under a hard timeout.
"""
