"""The representation-quality benchmark end to end on the tiny corpus."""

import csv
import os
import shlex

import pytest

from benchmarks import quality_main
from benchmarks.quality import (LOGMEL_BASELINE, RANDOM_INIT, RETRIEVAL,
                                SUPERVISED, QualityConfig,
                                run_quality_benchmark)
from model import cli

TASKS = ("triplet", "temporal_gap")
# The tiny corpus's 4 instrument clips cannot be split: that column is skipped.
COLUMNS = ["content", "keyword", "speaker", RETRIEVAL]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
  """The benchmark's first run: its config and table."""
  config = QualityConfig(corpus="tiny", encoder="tiny", tasks=TASKS, steps=4,
                         batch_size=4, supervised_steps=4,
                         out_dir=str(tmp_path_factory.mktemp("quality")))
  return config, run_quality_benchmark(config, show_progress=False)


def _read_csv(path: str) -> list[list[str]]:
  with open(path, newline="") as f:
    return list(csv.reader(f))


def _checkpoints(config: QualityConfig) -> dict[str, float]:
  """Modification time of every checkpoint file of the SSL runs."""
  times = {}
  for task in TASKS:
    directory = os.path.join(config.out_dir, "runs", task, "checkpoints")
    for name in os.listdir(directory):
      times[f"{task}/{name}"] = os.path.getmtime(os.path.join(directory, name))
  return times


@pytest.mark.slow
def test_table_rows_columns_and_range(first_run):
  config, rows = first_run
  assert list(rows) == [RANDOM_INIT, LOGMEL_BASELINE, SUPERVISED, *TASKS]
  for name, scores in rows.items():
    expected = COLUMNS[:-1] if name == SUPERVISED else COLUMNS
    assert list(scores) == expected, name
    assert all(0.0 <= value <= 1.0 for value in scores.values()), name
  results = _read_csv(os.path.join(config.out_dir, "results.csv"))
  assert results[0] == ["model", *COLUMNS]
  assert [line[0] for line in results[1:]] == list(rows)
  assert results[3][-1] == ""  # No retrieval score for the supervised row.


@pytest.mark.slow
def test_writes_report_fine_tuning_and_chart(first_run):
  config, rows = first_run
  with open(os.path.join(config.out_dir, "report.md")) as f:
    report = f.read()
  assert "| model | " + " | ".join(COLUMNS) + " |" in report
  assert all(f"| {name} |" in report for name in rows)
  fine_tuning = _read_csv(os.path.join(config.out_dir, "fine_tune.csv"))
  assert fine_tuning[0] == ["model", *COLUMNS[:-1]]
  labels = [line[0] for line in fine_tuning[1:]]
  assert labels[0] in {f"probe ({task})" for task in TASKS}
  assert labels[1:] == ["fine-tune k=1", "fine-tune k=2", SUPERVISED,
                        "gap recovered k=1", "gap recovered k=2"]
  for line in fine_tuning[1:4]:
    assert all(0.0 <= float(value) <= 1.0 for value in line[1:])
  with open(os.path.join(config.out_dir, "quality.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_report_command_reproduces_the_config(first_run):
  config, _ = first_run
  with open(os.path.join(config.out_dir, "report.md")) as f:
    command = next(line for line in f
                   if line.startswith("python -m benchmarks.quality_main"))
  cli.parse(quality_main.FLAGS, ["quality_main", *shlex.split(command)[3:]])
  assert repr(quality_main.config_from_flags()) == repr(config)


@pytest.mark.slow
def test_rerun_reuses_finished_runs(first_run):
  config, rows = first_run
  checkpoints = _checkpoints(config)
  assert run_quality_benchmark(config, show_progress=False) == rows
  assert _checkpoints(config) == checkpoints


@pytest.mark.slow
def test_probe_folds_cross_validate_the_probes(first_run, tmp_path):
  """k folds reach every probe row (reusing copies of the trained runs); the
  supervised row keeps the single split."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  config, rows = first_run
  shutil.copytree(os.path.join(config.out_dir, "runs"), tmp_path / "runs")
  folded = dataclasses.replace(config, probe_folds=2, out_dir=str(tmp_path),
                               corpus_dir=config.corpus_path)
  folded_rows = run_quality_benchmark(folded, show_progress=False)
  assert folded_rows[SUPERVISED] == rows[SUPERVISED]
  assert set(folded_rows) == set(rows)
  for name in (RANDOM_INIT, LOGMEL_BASELINE, *TASKS):
    for column in COLUMNS:
      assert 0.0 <= folded_rows[name][column] <= 1.0
  # The probe columns change for at least one row: the folds were used.
  assert any(folded_rows[name]["speaker"] != rows[name]["speaker"]
             or folded_rows[name]["content"] != rows[name]["content"]
             for name in (RANDOM_INIT, LOGMEL_BASELINE, *TASKS))
  report = (tmp_path / "report.md").read_text()
  assert "2-fold cross-validated" in report
  assert "--probe_folds=2" in report


@pytest.mark.parametrize("change", [
    dict(tasks=("triplet", "triplet")), dict(tasks=("unknown",)),
    dict(tasks=()), dict(corpus="huge"), dict(encoder="huge"), dict(steps=0),
    dict(segment_hop=0.0), dict(min_clip_fraction=1.5),
    dict(fine_tune_blocks=(5,)), dict(probe_folds=0),
])
def test_config_rejects_invalid_values(change):
  with pytest.raises(ValueError, match="QualityConfig"):
    QualityConfig(**change)


def test_seeds_statistics_and_table_keep_cells_every_seed_has():
  from benchmarks import quality_seeds  # pylint: disable=g-import-not-at-top
  tables = [{"a": {"keyword": 0.5, "speaker": 0.2}},
            {"a": {"keyword": 0.7}}, {"a": {"keyword": 0.9}}]
  rows = quality_seeds._statistics(tables)  # pylint: disable=protected-access
  assert list(rows["a"]) == ["keyword"]
  assert rows["a"]["keyword"].mean == pytest.approx(0.7)
  assert rows["a"]["keyword"].std == pytest.approx(0.2)
  assert "| a | 0.700 ± 0.200 |" in quality_seeds.format_seeds_table(rows)


def test_seed_statistics_interval_and_seeds_for_a_half_width():
  from benchmarks import quality_seeds  # pylint: disable=g-import-not-at-top
  # Two seeds: t(0.975, 1 df) = 12.706; std of (80, 90) = sqrt(50).
  cell = quality_seeds.SeedStatistics((80.0, 90.0))
  low, high = cell.confidence_interval(0.95)
  assert (low, high) == pytest.approx((85.0 - 63.53, 85.0 + 63.53), abs=0.01)
  # Three seeds of spread 1: t(0.975, 2 df) = 4.303 -> +-2.484.
  assert quality_seeds.SeedStatistics((1.0, 2.0, 3.0)).confidence_interval(
      0.95) == pytest.approx((2.0 - 2.484, 2.0 + 2.484), abs=1e-3)
  # Seeds for +-5 at std sqrt(50): 11 (t(10 df) = 2.228 -> 4.75), where 10
  # seeds give t(9 df) = 2.262 -> 5.06.
  assert cell.seeds_for_half_width(5.0, 0.95) == 11
  assert cell.seeds_for_half_width(100.0) == 2
  assert cell.seeds_for_half_width(1e-6, limit=50) == 50
  assert quality_seeds.SeedStatistics((7.0, 7.0)).seeds_for_half_width(
      0.1) == 2
  with pytest.raises(ValueError, match=">= 2 seeds, got 1"):
    quality_seeds.SeedStatistics((0.5,)).confidence_interval()
  with pytest.raises(ValueError, match=">= 2 seeds, got 1"):
    quality_seeds.SeedStatistics((0.5,)).seeds_for_half_width(1.0)
  with pytest.raises(ValueError, match="half_width must be > 0, got 0"):
    cell.seeds_for_half_width(0.0)
  with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 95"):
    cell.confidence_interval(95)


@pytest.mark.slow
def test_seeds_table_is_mean_and_std_of_the_seed_runs(tmp_path):
  from benchmarks import quality_seeds  # pylint: disable=g-import-not-at-top
  config = QualityConfig(corpus="tiny", encoder="tiny", tasks=("triplet",),
                         steps=2, batch_size=4, supervised_steps=2,
                         fine_tune_blocks=(0,), out_dir=str(tmp_path))
  rows = quality_seeds.run_quality_seeds(config, [0, 1],
                                         show_progress=False)
  per_seed = {}
  for seed in (0, 1):
    table = _read_csv(tmp_path / f"seed_{seed}" / "results.csv")
    per_seed[seed] = {r[0]: dict(zip(table[0][1:], r[1:])) for r in table[1:]}
  cell = rows["triplet"]["keyword"]
  values = [float(per_seed[s]["triplet"]["keyword"]) for s in (0, 1)]
  assert cell.values == pytest.approx(values, abs=1e-6)
  assert cell.mean == pytest.approx(sum(values) / 2, abs=1e-6)
  assert cell.std == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5,
                                   abs=1e-6)
  assert {RANDOM_INIT, LOGMEL_BASELINE, "triplet"} <= set(rows)
  # One corpus serves every seed.
  assert not os.path.exists(tmp_path / "seed_1" / "corpus")
  report = (tmp_path / "report_seeds.md").read_text()
  assert f"{cell.mean:.3f} ± {cell.std:.3f}" in report
  assert "--seeds=0,1" in report and "--seed=" not in report
  lines = _read_csv(tmp_path / "seeds.csv")
  assert lines[0][:5] == ["model", "column", "mean", "std", "seeds"]
  with open(tmp_path / "quality_seeds.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError, match="distinct"):
    quality_seeds.run_quality_seeds(config, [3, 3], show_progress=False)
