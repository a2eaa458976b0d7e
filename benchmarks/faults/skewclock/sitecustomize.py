"""Shifts this process's wall clock by ``$FAULTS_CLOCK_SKEW`` seconds (the fallback of the clock
skew run when libfaketime is not installed). Put this directory first on PYTHONPATH: Python
imports ``sitecustomize`` at startup. Only ``time.time``/``time.time_ns`` move; libfaketime
moves every clock the C library reports, ``datetime.now()`` included, so it is preferred.
"""

from __future__ import annotations

import os
import time

_skew = float(os.environ.get("FAULTS_CLOCK_SKEW", "0"))
if _skew:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _skew
    time.time_ns = lambda: _time_ns() + int(_skew * 1e9)
