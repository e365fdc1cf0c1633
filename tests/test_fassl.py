"""The FASSL study in its quick setting: every output, the best rounds and
the verdicts are consistent with the runs it made."""

import csv
import json
import os
import shlex

import pytest

from benchmarks import fassl_main
from benchmarks import fassl
from model import cli
from model.best_models import read_best_index


@pytest.mark.slow
def test_quick_study_writes_consistent_outputs(tmp_path):
  config = fassl.FasslConfig(**fassl.QUICK, out_dir=str(tmp_path))
  result = fassl.run_fassl_benchmark(config, show_progress=False)
  tasks = config.tasks
  assert list(result.rows) == [fassl.RANDOM_INIT, *(
      f"{t} {s}" for t in tasks for s in ("federated", "centralized"))]
  columns = list(result.rows[fassl.RANDOM_INIT])
  assert {"keyword probe", "keyword mAP", "speaker mAP"} <= set(columns)
  for values in result.rows.values():
    assert list(values) == columns
    assert all(0.0 <= v <= 1.0 for v in values.values())
  # Winners name a task of the family they name, with the best score.
  for (column, setting), (family, task) in result.winners.items():
    assert config.family(task) == family or family == fassl.TIE
    assert result.rows[f"{task} {setting}"][column] == max(
        result.rows[f"{t} {setting}"][column] for t in tasks)
  # Best rounds: those of the runs' best.json, the argmax of their curves.
  for task in tasks:
    index = read_best_index(str(tmp_path / "runs" / f"{task}_federated"))
    assert {m: {"round": r, "value": pytest.approx(v)}
            for m, (r, v) in result.best[task].items()} == index
    for metric, (round_num, value) in result.best[task].items():
      scores = [row[metric] for row in result.curves[task]]
      assert value == pytest.approx(max(scores))
      assert result.curves[task][scores.index(max(scores))]["round"] == (
          round_num)
  assert set(result.checks) == {
      "barlow_twins federated beats random init",
      "barlow_twins centralized beats random init",
      "best feature-matching federated >= 95% of centralized mAP"}
  with open(tmp_path / "results.csv") as f:
    assert [r["model"] for r in csv.DictReader(f)] == list(result.rows)
  report = (tmp_path / "report.md").read_text()
  for text in ("Which family wins", "## Targets", "best/", "barlow_twins"):
    assert text in report
  assert os.path.getsize(tmp_path / "quality_vs_rounds.png") > 10_000
  assert os.path.exists(tmp_path / "best_rounds.csv")
  with open(tmp_path / "runs" / "barlow_twins_federated" / "config.json") as f:
    assert json.load(f)["partition"]["method"] == "natural"
  # The report's command reproduces the config.
  command = next(line for line in report.splitlines()
                 if line.startswith("python -m benchmarks.fassl_main"))
  cli.parse(fassl_main.FLAGS, ["fassl_main", *shlex.split(command)[3:]])
  assert repr(fassl_main.config_from_flags()) == repr(config)


@pytest.mark.parametrize("change, message", [
    (dict(feature_matching=("nt_xent", "nt_xent")), "twice"),
    (dict(predictive=("no_such_task",)), "unknown tasks"),
    (dict(predictive=()), "at least one task"),
    (dict(corpus="huge"), "corpus"),
    (dict(rounds=0), "rounds"),
])
def test_config_rejects_invalid_values(change, message):
  with pytest.raises(ValueError, match=message):
    fassl.FasslConfig(**change)
