"""The quality table over several seeds: mean and standard deviation.

One :func:`benchmarks.quality.run_quality_benchmark` per seed, each in
``<out_dir>/seed_<s>`` (resumable on its own, the corpus generated once),
then the main table as mean ± sample standard deviation over the seeds:
``seeds.csv`` (one line per row and column with every seed's value),
``report_seeds.md`` and ``quality_seeds.png`` (bars with error bars).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Mapping, Sequence

from matplotlib.figure import Figure
import numpy as np
from scipy import stats

from benchmarks.quality import QualityConfig, run_quality_benchmark
from model import cli

__all__ = ["SeedStatistics", "format_seeds_table", "run_quality_seeds"]


@dataclasses.dataclass(frozen=True)
class SeedStatistics:
  """One cell of the table over seeds.

  Attributes:
    values: The score of every seed, in seed order.
  """

  values: tuple[float, ...]

  @property
  def mean(self) -> float:
    return float(np.mean(self.values))

  @property
  def std(self) -> float:
    """Sample standard deviation (0 for a single seed)."""
    return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0

  def confidence_interval(self, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean over the seeds.

    Args:
      level: Coverage of the interval, in (0, 1).

    Returns:
      ``(low, high)``.

    Raises:
      ValueError: Fewer than two seeds, or ``level`` outside (0, 1).
    """
    half = _half_width(self.std, len(self.values), level)
    return self.mean - half, self.mean + half

  def seeds_for_half_width(self, half_width: float, level: float = 0.95,
                           limit: int = 100_000) -> int:
    """Seeds whose interval at ``level`` would be ``mean ± half_width``.

    Assumes the spread measured over these seeds (their sample standard
    deviation) holds for more seeds; at least 2.

    Args:
      half_width: Wanted half-width, in the values' unit (> 0).
      level: Coverage of the interval, in (0, 1).
      limit: Largest answer; a spread that needs more returns ``limit``.

    Raises:
      ValueError: Fewer than two seeds, ``half_width <= 0`` or ``level``
        outside (0, 1).
    """
    if half_width <= 0:
      raise ValueError(f"half_width must be > 0, got {half_width}")
    if len(self.values) < 2:
      raise ValueError(f"the spread needs >= 2 seeds, got {len(self.values)}")
    _check_level(level)
    # t > z, so the normal approximation's count is a lower bound.
    z = float(stats.norm.ppf(0.5 + level / 2))
    n = min(limit, max(2, math.ceil((z * self.std / half_width) ** 2)))
    while n < limit and _half_width(self.std, n, level) > half_width:
      n += 1
    return n


def _check_level(level: float) -> None:
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1), got {level}")


def _half_width(std: float, n: int, level: float) -> float:
  """``t(level, n - 1) * std / sqrt(n)``."""
  _check_level(level)
  if n < 2:
    raise ValueError(f"a confidence interval needs >= 2 seeds, got {n}")
  return float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)


def _statistics(tables: Sequence[Mapping[str, Mapping[str, float]]]
                ) -> dict[str, dict[str, SeedStatistics]]:
  """Cells present in every seed's table, with their values over seeds."""
  rows: dict[str, dict[str, SeedStatistics]] = {}
  for name, columns in tables[0].items():
    for column in columns:
      if all(column in table.get(name, {}) for table in tables):
        rows.setdefault(name, {})[column] = SeedStatistics(
            tuple(float(table[name][column]) for table in tables))
  return rows


def format_seeds_table(rows: Mapping[str, Mapping[str, SeedStatistics]], *,
                       digits: int = 3) -> str:
  """A Markdown table of ``mean ± std`` cells, the best mean of every column
  in bold among the rows that are not baselines listed first.

  Args:
    rows: Statistics by column by row name.
    digits: Decimals printed.

  Returns:
    The table, lines joined by newlines.
  """
  columns = list(dict.fromkeys(c for values in rows.values() for c in values))
  lines = ["| model | " + " | ".join(columns) + " |",
           "|---|" + "---:|" * len(columns)]
  for name, values in rows.items():
    cells = [f"{values[c].mean:.{digits}f} ± {values[c].std:.{digits}f}"
             if c in values else "-" for c in columns]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _plot(rows: Mapping[str, Mapping[str, SeedStatistics]], path: str,
          title: str) -> None:
  columns = list(dict.fromkeys(c for values in rows.values() for c in values))
  positions = np.arange(len(columns))
  width = 0.8 / len(rows)
  figure = Figure(figsize=(max(7.0, 0.35 * len(rows) * len(columns) + 2),
                           4.5), layout="constrained")
  axes = figure.subplots()
  for i, (name, values) in enumerate(rows.items()):
    axes.bar(positions + (i - (len(rows) - 1) / 2) * width,
             [values[c].mean if c in values else np.nan for c in columns],
             width, yerr=[values[c].std if c in values else 0.0
                          for c in columns], capsize=2, label=name)
  axes.set_xticks(positions, columns)
  axes.set_ylabel("probe accuracy / mAP (mean ± std over seeds)")
  axes.set_title(title)
  axes.grid(axis="y", alpha=0.3)
  axes.legend(fontsize="small", ncols=2)
  figure.savefig(path, dpi=110)


def run_quality_seeds(config: QualityConfig, seeds: Sequence[int], *,
                      show_progress: bool = True
                      ) -> dict[str, dict[str, SeedStatistics]]:
  """Runs the quality benchmark once per seed and aggregates the main table.

  Args:
    config: The benchmark; its ``seed`` and ``out_dir`` are replaced per
      seed (``<out_dir>/seed_<s>``), its corpus is shared by all seeds.
    seeds: Distinct seeds, at least one.
    show_progress: Show progress bars.

  Returns:
    Statistics over seeds by column by row, for the cells every seed has.

  Raises:
    ValueError: No seeds, or repeated seeds.
  """
  seeds = tuple(int(seed) for seed in seeds)
  if not seeds or len(set(seeds)) < len(seeds):
    raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
  corpus_dir = config.corpus_path
  tables = []
  for seed in seeds:
    tables.append(run_quality_benchmark(
        dataclasses.replace(config, seed=seed, corpus_dir=corpus_dir,
                            out_dir=os.path.join(config.out_dir,
                                                 f"seed_{seed}")),
        show_progress=show_progress))
  rows = _statistics(tables)
  os.makedirs(config.out_dir, exist_ok=True)
  with open(os.path.join(config.out_dir, "seeds.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["model", "column", "mean", "std", "seeds",
                     *(f"seed_{s}" for s in seeds)])
    for name, values in rows.items():
      for column, cell in values.items():
        writer.writerow([name, column, f"{cell.mean:.6f}", f"{cell.std:.6f}",
                         len(seeds), *(f"{v:.6f}" for v in cell.values)])
  title = (f"{config.encoder} encoder, {config.pooling} pooling, "
           f"{config.corpus} corpus, seeds {', '.join(map(str, seeds))}")
  _plot(rows, os.path.join(config.out_dir, "quality_seeds.png"), title)
  flags = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
           if f.name != "seed"}
  command = cli.command_line("python -m benchmarks.quality_main",
                             {**flags, "seeds": seeds})
  with open(os.path.join(config.out_dir, "report_seeds.md"), "w") as f:
    f.write("\n".join([
        f"# Representation quality over {len(seeds)} seeds: {title}", "",
        "Mean ± sample standard deviation over the seeds; each seed draws "
        "its own probe splits, initial weights and batch order. Per-seed "
        "reports: `seed_<s>/report.md`.", "",
        format_seeds_table(rows), "", "## Command", "", "```", command,
        "```", ""]))
  return rows
