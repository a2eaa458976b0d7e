"""PNG charts of a run (matplotlib, from the ``bench`` extra), for ``docs/img/``.

Each chart shows medians with the range over repetitions as an error bar. Without
matplotlib, no chart is drawn and the page keeps its table only.
"""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path
from typing import Any

from .report import OURS, Run, values

COLOURS = {
    "aiotaskq": "#d62728", "arq": "#1f77b4", "saq": "#2ca02c", "streaq": "#9467bd", "taskiq": "#ff7f0e",
    "floor": "#7f7f7f", "baseline": "#17becf", "awaited": "#9edae5", "roundtrip": "#c7c7c7",
}  # fmt: skip
SCALE = (("scale_1k", 1_000), ("scale_100k", 100_000), ("scale_1m", 1_000_000))


def _stats(
    vals: dict[tuple[str, str, str], list[float]], system: str, case: str, key: str
) -> tuple[float, float, float]:
    """(median, distance to the min, distance to the max); NaN when there is no value."""
    vs = vals.get((system, case, key))
    if not vs:
        return float("nan"), 0.0, 0.0
    m = statistics.median(vs)
    return m, m - min(vs), max(vs) - m


def _bars(ax: Any, vals: dict[tuple[str, str, str], list[float]], systems: list[str],
          series: list[tuple[str, str, str]], title: str, unit: str, log: bool = False) -> None:  # fmt: skip
    """Grouped bars: one group per series (case, metric, label), one bar per system."""
    width = 0.8 / max(len(systems), 1)
    for k, system in enumerate(systems):
        stats = [_stats(vals, system, case, key) for case, key, _ in series]
        xs = [i + (k - (len(systems) - 1) / 2) * width for i in range(len(series))]
        ax.bar(xs, [s[0] for s in stats], width, yerr=[[s[1] for s in stats], [s[2] for s in stats]],
               label=system, color=COLOURS.get(system), capsize=2,
               edgecolor="black" if system == OURS else None)  # fmt: skip
    ax.set_xticks(range(len(series)), [label for _, _, label in series])
    ax.set_title(title)
    ax.set_ylabel(unit)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


def draw(runs: list[Run], systems: list[str], cases: list[str], folder: Path, loop: str) -> list[Path]:
    """Draw the charts of the cases that ran; the files written."""
    if importlib.util.find_spec("matplotlib") is None:
        return []
    import matplotlib  # type: ignore[import-not-found, unused-ignore]  # in the bench extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    folder.mkdir(parents=True, exist_ok=True)
    vals = values(runs)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = folder / f"bench-{name}-{loop}.png"
        fig.suptitle(f"{name} ({loop}; medians, bars span the repetitions)", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    if "drain" in cases:
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        _bars(a, vals, systems, [("drain", "enqueue_rate", "100 calls in flight"),
                                 ("drain", "enqueue_batch_rate", "batch API")], "W1 enqueue", "jobs/s")  # fmt: skip
        _bars(b, vals, systems, [("drain", "drain_rate", "1 worker, 20k no-op jobs")], "W1 drain", "jobs/s")
        b.legend(fontsize=8)
        save(fig, "throughput")
    if "latency" in cases:
        fig, ax = plt.subplots(figsize=(8, 4))
        _bars(ax, vals, systems, [("latency", f"latency_{p}_ms", p) for p in ("p50", "p95", "p99")],
              "W2 enqueue→start latency, idle worker (lower is better)", "ms (log scale)", log=True)  # fmt: skip
        ax.legend(fontsize=8)
        save(fig, "latency")
    if "io" in cases or "retries" in cases:
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        _bars(a, vals, systems, [("io", "io_drain_s", "5,000 jobs of sleep(10 ms), concurrency 100")],
              "W3 I/O-bound drain time (lower is better)", "s")  # fmt: skip
        ideal = [v for (s, c, k), vs in vals.items() if c == "io" and k == "io_ideal_s" for v in vs]
        if ideal:
            a.axhline(ideal[0], color="black", linestyle="--", linewidth=1, label="ideal")
        a.legend(fontsize=8)
        _bars(b, vals, systems, [("retries", "retry_drain_s", "10,000 jobs failing once")],
              "W5 retries: drain time (lower is better)", "s")  # fmt: skip
        save(fig, "io-retries")
    ran = [(case, n) for case, n in SCALE if case in cases]
    if ran:
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        for system in systems:
            pts = [(n, _stats(vals, system, case, "drain_rate")[0]) for case, n in ran]
            pts = [(n, v) for n, v in pts if v == v]  # NaN: not run
            if pts:
                a.plot([n for n, _ in pts], [v for _, v in pts], marker="o", label=system, color=COLOURS.get(system))
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("jobs waiting when the worker starts")
        a.set_ylabel("jobs/s (log scale)")
        a.set_title("W4 drain rate by queue depth, 1 worker")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
        _bars(b, vals, systems, [(case, "memory_bytes_per_job", f"{n:,} waiting") for case, n in ran],
              "W4 Redis memory per queued job", "bytes (log scale)", log=True)  # fmt: skip
        save(fig, "scale")
    _web(plt, vals, systems, cases, save)
    return written


def _web(plt: Any, vals: dict[tuple[str, str, str], list[float]], systems: list[str], cases: list[str],
         save: Any) -> None:  # fmt: skip
    """W6 and the HTTP benchmark side by side: what a web app that enqueues one job per request gets."""
    single = [(c, "single_rate", label) for c, label in (("single_1", "1 in flight"), ("single_100", "100 in flight"))
              if c in cases]  # fmt: skip
    web = [
        (c, "http_rps", label) for c, label in (("http_50", "50 clients"), ("http_200", "200 clients")) if c in cases
    ]
    if not single and not web:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    if single:
        queues = [s for s in systems if s not in ("baseline", "awaited", "roundtrip")]
        _bars(a, vals, queues, single, "W6 single enqueue calls, one process", "jobs/s")
        a.legend(fontsize=8)
    if web:
        _bars(b, vals, systems, web, "HTTP endpoint enqueueing one job per request", "requests/s")
        b.legend(fontsize=8)
    save(fig, "web")
