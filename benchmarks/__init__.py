"""Benchmarks of aiotaskq against arq, SAQ, streaq and taskiq: ``python -m benchmarks``
(see ``docs/benchmarks.md``).

Layout:

- ``adapter.py``: the ``System`` interface every queue system implements, the ``Probe``
  its benchmark tasks report to (the same probe for every system), and the registry.
- ``adapter_aiotaskq.py``, ``adapter_arq.py``, ``adapter_saq.py``, ``adapter_streaq.py``,
  ``adapter_taskiq.py``: one system each, used as its documentation shows; ``adapter_floor.py``
  and ``adapter_baseline.py``: references (a bare Redis list; the HTTP endpoint without enqueue).
- ``workloads.py``: the workloads (W1 drain, W2 latency, W3 io, W4 scale, W5 retries, W6 single
  enqueues in flight), run as the producer of one repetition in a fresh subprocess (``run.py``).
- ``web.py``: the HTTP benchmark: ``http_app.py`` (a FastAPI endpoint that enqueues one job per
  request) under uvicorn, driven by ``http_load.py`` (``hey``, or an asyncio loop without it).
- ``measure.py``: the worker subprocesses (``worker.py``), Redis-side figures, and draining
  a queue until Redis records its jobs as ended.
- ``report.py``: machine details, medians, the markdown table and the results blocks of
  ``docs/benchmarks.md``; ``targets.py``: the table's rows and targets; ``charts.py``: its PNG charts.
- ``__main__.py``: the command line; starts a private ``redis-server`` and runs every
  repetition in a fresh subprocess under a hard timeout, systems alternating.
"""
