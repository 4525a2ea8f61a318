"""The benchmark's output: a table on stdout, JSON, and an optional plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .runner import BenchResult

__all__ = ["format_table", "write_json", "write_plot"]

REFERENCE = "lb_ioloop"  # ratios are to this project's broker


def format_table(results: Sequence[BenchResult]) -> str:
    """One block per load shape; ratios are other broker / lb_ioloop."""
    lines = []
    shapes = list(dict.fromkeys(result.shape for result in results))
    for shape in shapes:
        rows = [r for r in results if r.shape == shape]
        ours = next((r for r in rows if r.broker == REFERENCE), None)
        lines.append(f"load: {shape.label()}, {rows[0].rounds} rounds of {shape.seconds:g}s")
        lines.append(
            f"  {'broker':16s} {'req/s':>9s} {'cpu us/req':>10s} {'p50 us':>9s} {'p99 us':>9s}"
            f" {'lost':>5s} {'rss MB':>7s}   vs lb_ioloop: cpu/req  req/s"
        )
        if shape.hold:
            lines[-1] = "  (workers hold every request: only memory is measured)"
            lines += [f"  {row.broker:16s} rss {row.rss_mb:.1f} MB" for row in rows]
            continue
        for row in rows:
            ratios = ""
            if ours is not None and row is not ours:
                ratios = (
                    f"   {row.cpu_us_per_request / ours.cpu_us_per_request:19.2f}x"
                    f" {row.rps / ours.rps:5.2f}x"
                )
            lines.append(
                f"  {row.broker:16s} {row.rps:9.0f} {row.cpu_us_per_request:10.1f}"
                f" {row.p50_us:9.0f} {row.p99_us:9.0f} {row.lost:5d} {row.rss_mb:7.1f}{ratios}"
            )
    return "\n".join(lines)


def write_json(results: Sequence[BenchResult], path: str | Path) -> None:
    """All results, one object each, as a JSON list."""
    Path(path).write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")


def write_plot(results: Sequence[BenchResult], path: str | Path) -> None:
    """Each broker's CPU per request and throughput relative to lb_ioloop, per load.

    Ratios rather than absolute figures, so that a 1 MB-body load and a
    10-byte one share a scale. Needs matplotlib (``pip install 'lb_ioloop[plot]'``).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen needed
    import matplotlib.pyplot as plt

    measured = [r for r in results if not r.shape.hold]
    shapes = list(dict.fromkeys(r.shape for r in measured))
    brokers = list(dict.fromkeys(r.broker for r in measured))
    ours = {r.shape: r for r in measured if r.broker == REFERENCE}
    figure, (cpu_axes, rps_axes) = plt.subplots(2, 1, figsize=(max(6, len(shapes) * 1.3), 7))
    width = 0.8 / len(brokers)
    for index, broker in enumerate(brokers):
        rows = {r.shape: r for r in measured if r.broker == broker}
        xs = [n + index * width for n in range(len(shapes))]
        cpu = [rows[s].cpu_us_per_request / ours[s].cpu_us_per_request for s in shapes]
        rps = [rows[s].rps / ours[s].rps for s in shapes]
        cpu_axes.bar(xs, cpu, width, label=broker)
        rps_axes.bar(xs, rps, width, label=broker)
    labels = [s.label().replace(" ", "\n") for s in shapes]
    for axes, title in (
        (cpu_axes, "broker CPU per request, relative to lb_ioloop (lower is better)"),
        (rps_axes, "requests/s, relative to lb_ioloop (higher is better)"),
    ):
        axes.set_title(title)
        axes.axhline(1.0, color="black", linewidth=0.8)
        axes.set_xticks([n + 0.4 - width / 2 for n in range(len(shapes))], labels, fontsize=7)
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
