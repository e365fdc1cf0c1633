"""Quality-vs-cost plots and the federated-vs-centralized comparison table."""

from __future__ import annotations

import csv
import os
from typing import Mapping, Sequence

from matplotlib.figure import Figure

__all__ = ["read_release_csv", "plot_quality_vs_cost", "plot_quality_vs_cost_runs"]

_COSTS = (("cumulative_client_flops", "cumulative client compute (GFLOPs)", 1e9),
          ("cumulative_bytes_up", "cumulative bytes uploaded (MB)", 1e6))


def read_release_csv(path: str) -> list[dict[str, float]]:
  """Rows of a CSV written by a ``tff.program.CSVFileReleaseManager``.

  Empty cells are dropped; every other value is a float.
  """
  with open(path, newline="") as f:
    return [{k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(f)]


def plot_quality_vs_cost_runs(runs: Mapping[str, Sequence[Mapping[str, float]]],
                              metrics: Sequence[str], path: str) -> None:
  """One panel per (metric, cost): a line per run (e.g. per partition).

  Args:
    runs: Run label -> evaluation rows (each with the metrics and the
      ``cumulative_*`` costs at that round).
    metrics: Downstream metrics to plot (rows without one are skipped).
    path: PNG to write.
  """
  figure = Figure(figsize=(4.2 * len(_COSTS), 3.2 * len(metrics)),
                  layout="constrained")
  axes = figure.subplots(len(metrics), len(_COSTS), squeeze=False)
  for i, metric in enumerate(metrics):
    for j, (cost, label, scale) in enumerate(_COSTS):
      ax = axes[i][j]
      for run, rows in runs.items():
        points = [(r[cost] / scale, r[metric]) for r in rows
                  if metric in r and cost in r]
        if points:
          ax.plot(*zip(*points), marker="o", label=run)
      ax.set_xlabel(label)
      ax.set_ylabel(metric)
      ax.grid(alpha=0.3)
      if i == 0 and j == 0:
        ax.legend(fontsize="small")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=110)


def plot_quality_vs_cost(run_dir: str, path: str | None = None) -> str:
  """Plots a run's ``eval.csv``: each downstream metric against its costs.

  Returns:
    The PNG path (default ``<run_dir>/quality_vs_cost.png``).
  """
  rows = read_release_csv(os.path.join(run_dir, "eval.csv"))
  metrics = sorted({k for r in rows for k in r
                    if not k.startswith("cumulative_") and k != "round"
                    and not k.startswith("retrieval_precision")})
  path = path or os.path.join(run_dir, "quality_vs_cost.png")
  plot_quality_vs_cost_runs({os.path.basename(run_dir.rstrip("/")): rows},
                            metrics, path)
  return path
