"""The CPU-bound task of ``benchmarks/processes.py`` (run by ``aiotaskq worker``): pure-Python
work that holds the GIL, so that one process uses one core at most."""

from __future__ import annotations

import os

from aiotaskq import Queue

queue = Queue(os.environ.get("CPU_APP_QUEUE", "cpu-bench"), keep_result=60)


@queue.task(name="crunch")
def crunch(n: int) -> int:
    """About 10 ms of CPU on this machine: a sum of squares in a Python loop."""
    total = 0
    for i in range(n):
        total += i * i
    return total
