"""The representation-quality benchmark end to end on the tiny corpus."""

import csv
import os
import shlex
import subprocess
import sys

import pytest

from benchmarks.quality import (LOGMEL_BASELINE, RANDOM_INIT, RETRIEVAL,
                                SUPERVISED, QualityConfig,
                                run_quality_benchmark)

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
  # Parsed in a fresh interpreter: launchers define flags on the global
  # FlagValues, and several launchers share flag names.
  parsed = subprocess.run(
      [sys.executable, "-c",
       "import sys; from absl import flags; "
       "from benchmarks import quality_main as m; "
       "flags.FLAGS(sys.argv); print(repr(m.config_from_flags()))",
       *shlex.split(command)[3:]],
      capture_output=True, text=True, check=True,
      env={**os.environ, "PYTHONPATH": os.getcwd()})
  assert parsed.stdout.strip().splitlines()[-1] == repr(config)


@pytest.mark.slow
def test_rerun_reuses_finished_runs(first_run):
  config, rows = first_run
  checkpoints = _checkpoints(config)
  assert run_quality_benchmark(config, show_progress=False) == rows
  assert _checkpoints(config) == checkpoints


@pytest.mark.parametrize("change", [
    dict(tasks=("triplet", "triplet")), dict(tasks=("unknown",)),
    dict(tasks=()), dict(corpus="huge"), dict(encoder="huge"), dict(steps=0),
    dict(segment_hop=0.0), dict(min_clip_fraction=1.5),
    dict(fine_tune_blocks=(5,)),
])
def test_config_rejects_invalid_values(change):
  with pytest.raises(ValueError, match="QualityConfig"):
    QualityConfig(**change)
