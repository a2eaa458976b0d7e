"""``aiotaskq worker --processes N`` and ``--reload``: a supervisor process that runs the worker
in child processes.

Each child is ``python -m aiotaskq worker`` with the same arguments (less ``--processes`` and
``--reload``): a fresh interpreter, so nothing the supervisor imported or opened is shared, and
every core can run a pool of its own. The supervisor

- restarts a child that exits without being asked to (a crash, an OOM kill), after a back-off
  that grows from 1 s to 30 s while children keep dying within a minute of their start, and
  logs each exit with its code or signal;
- forwards SIGTERM and SIGINT to every child, which stops gracefully (it stops claiming, waits
  ``--shutdown-timeout`` for its running jobs, gives back the rest), waits for them, and exits 0
  (or the first child's non-zero exit code); a second signal is forwarded too (the children's
  own "stop now");
- with ``--reload`` (development; needs the ``watchfiles`` package: ``aiotaskq[reload]``),
  watches the working directory (or each ``--reload-dir``) for changed ``.py`` files and
  restarts the children the same graceful way, so jobs in flight finish or are given back,
  never lost.

A supervisor that is itself killed outright (SIGKILL, the OOM killer) cannot stop its children:
each child is told its supervisor's pid (``AIOTASKQ_SUPERVISOR_PID``) and watches for it to go
(its parent pid changes), then stops gracefully by itself, as on SIGTERM (``watch_supervisor``),
so no orphan keeps serving the queue under a supervisor that is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("aiotaskq")

_BACKOFF_MIN, _BACKOFF_MAX, _HEALTHY_AFTER = 1.0, 30.0, 60.0
SUPERVISOR_PID = "AIOTASKQ_SUPERVISOR_PID"  # set in each child's environment
_PARENT_CHECK = 0.5  # seconds between a child's looks at its parent pid


def child_argv(argv: Sequence[str]) -> list[str]:
    """The worker's arguments for a child: ``argv`` without ``--processes N``, ``--reload`` and
    ``--reload-dir DIR``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--processes", "--reload-dir"):
            skip = True
        elif arg.startswith(("--processes=", "--reload-dir=")) or arg == "--reload":
            continue
        else:
            out.append(arg)
    return out


class Supervisor:
    """Runs ``processes`` worker children until told to stop (see the module)."""

    def __init__(self, argv: Sequence[str], processes: int, reload: bool, watch: Sequence[Path] = ()) -> None:
        self.argv = [sys.executable, "-m", "aiotaskq", *child_argv(argv)]
        self.processes, self.reload = processes, reload
        self.watched = list(watch) or [Path.cwd()]
        self.children: list[subprocess.Popen[bytes] | None] = [None] * processes
        self.started_at = [0.0] * processes
        self.backoff = [_BACKOFF_MIN] * processes
        self.restart_at = [0.0] * processes
        self.stopping = threading.Event()
        self.reloading = threading.Event()
        self.exit_code = 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self.reload:
            threading.Thread(target=self._watch, name="aiotaskq-reload", daemon=True).start()
        log.info("aiotaskq supervisor (pid %d): %d worker process(es)%s", os.getpid(), self.processes,
                 ", reloading on code changes" if self.reload else "")  # fmt: skip
        for i in range(self.processes):
            self._spawn(i)
        while not self.stopping.is_set():
            if self.reloading.is_set():
                self.reloading.clear()
                log.info("code changed: restarting the worker process(es)")
                self._stop_children()
                for i in range(self.processes):
                    self._spawn(i)
            self._reap()
            self.stopping.wait(0.1)
        self._stop_children()
        return self.exit_code

    def _spawn(self, i: int) -> None:
        # A process group of its own: a terminal's Ctrl-C reaches the supervisor alone, which
        # forwards one SIGTERM (the same signal twice would mean "stop now" to the child).
        env = {**os.environ, SUPERVISOR_PID: str(os.getpid())}
        self.children[i] = subprocess.Popen(self.argv, process_group=0, env=env)  # noqa: S603 - our interpreter and module
        self.started_at[i] = time.monotonic()
        log.info("worker process %d started (pid %d)", i, self.children[i].pid)  # type: ignore[union-attr]

    def _reap(self) -> None:
        now = time.monotonic()
        for i, child in enumerate(self.children):
            if child is None:
                if now >= self.restart_at[i] and not self.stopping.is_set():
                    self._spawn(i)
                continue
            code = child.poll()
            if code is None:
                continue
            self.children[i] = None
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            quick = now - self.started_at[i] < _HEALTHY_AFTER
            self.backoff[i] = min(self.backoff[i] * 2, _BACKOFF_MAX) if quick else _BACKOFF_MIN
            wait = self.backoff[i] if quick else _BACKOFF_MIN
            self.restart_at[i] = now + wait
            log.warning("worker process %d (pid %d) ended with %s; restarting it in %.0fs", i, child.pid, how, wait)

    def _stop_children(self) -> None:
        """SIGTERM every child (a graceful stop) and wait for each."""
        live = [c for c in self.children if c is not None and c.poll() is None]
        for c in live:
            c.send_signal(signal.SIGTERM)
        for c in live:
            code = c.wait()
            if code and not self.exit_code and code != -signal.SIGTERM:
                self.exit_code = code if code > 0 else 128 - code
        self.children = [None] * self.processes

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stopping.is_set():  # a second signal: the children's own "stop now"
            for c in self.children:
                if c is not None and c.poll() is None:
                    c.send_signal(signum)
            return
        log.info("%s: stopping the worker process(es) gracefully", signal.Signals(signum).name)
        self.stopping.set()

    def _watch(self) -> None:
        import watchfiles

        for changes in watchfiles.watch(*self.watched, watch_filter=watchfiles.PythonFilter(),
                                        stop_event=self.stopping, debounce=300, rust_timeout=500):  # fmt: skip
            names = sorted({self._shown(Path(p)) for _, p in changes})
            log.info("changed: %s", ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""))
            self.reloading.set()

    def _shown(self, path: Path) -> str:
        """A changed file's name, relative to the watched directory it is under."""
        for root in self.watched:
            if path.is_relative_to(root):
                return str(path.relative_to(root))
        return str(path)


async def watch_supervisor(stop: Callable[[], None]) -> None:
    """In a child: call ``stop`` (a graceful stop) once the supervisor named in the environment
    is gone; returns at once in a worker that has none."""
    import anyio

    supervisor = os.environ.pop(SUPERVISOR_PID, "")  # (not passed on to processes its tasks start)
    if not supervisor.isdigit():
        return
    while os.getppid() == int(supervisor):  # noqa: ASYNC110 - a pid to poll, no event to wait on
        await anyio.sleep(_PARENT_CHECK)
    log.warning("the supervisor (pid %s) is gone: stopping gracefully", supervisor)
    stop()
