"""The distillation benchmark end to end on the tiny corpus."""

import csv
import os
import shlex

import numpy as np
import pytest
import tensorflow as tf

from export.corpus import load_corpus
from benchmarks import distill_main
from benchmarks.distill import (MEAN, MFLOPS, PARAMS, PERCENT_OF_TEACHER,
                            QUANT_DELTA, DistillConfig,
                            run_distill_benchmark)
from model import cli
from model import randomness
from model.datasets.pipeline import training_segments
from model.saved_model import saved_model_dir
from model.ssl_model import SSLModel, load_model

TASKS = ["content", "keyword", "speaker"]  # 4 instrument clips: not split.


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
  config = DistillConfig(
      corpus="tiny", teacher_encoder="small", teacher_steps=4,
      student_encoder="tiny", steps=30, batch_size=4, learning_rate=3e-3,
      rounds=1, clients_per_round=2, client_batch_size=4, max_local_steps=2,
      quantizations=("int8",), verify_steps=4,
      out_dir=str(tmp_path_factory.mktemp("distill")))
  return config, run_distill_benchmark(config, show_progress=False)


@pytest.mark.slow
def test_table_rows_and_columns(first_run):
  _, result = first_run
  assert list(result.rows) == [
      "teacher (small, triplet)", "student random init (tiny)",
      "student scratch (tiny, triplet)",
      "student distilled, central (tiny)",
      "student distilled, federated (tiny)",
      "student distilled, TFLite int8 (tiny)"]
  for name, row in result.rows.items():
    assert [k for k in row if k in TASKS] == TASKS, name
    assert all(0 <= row[t] <= 1 for t in TASKS)
    assert row[MEAN] == pytest.approx(np.mean([row[t] for t in TASKS]))
  teacher, _, *students = result.rows.values()
  assert teacher[PERCENT_OF_TEACHER] == pytest.approx(100)
  assert teacher[PARAMS] > students[0][PARAMS]
  assert students[0][MFLOPS] == pytest.approx(3.098624)
  assert QUANT_DELTA in students[-1] and QUANT_DELTA not in students[1]
  assert len(result.goals) == 1 + 2 + 1


@pytest.mark.slow
def test_distillation_lowers_the_regression_loss(first_run):
  config, _ = first_run
  trained = load_model(saved_model_dir(
      os.path.join(config.out_dir, "runs", "student_distilled")))
  initial = SSLModel(trained.spec)
  batch = training_segments(
      load_corpus(config.corpus_path).waveforms, trained.spec).waveforms[:16]

  def loss(model):
    with randomness.stateless_seed(tf.constant([7, 0], tf.int64)):
      return float(model.loss(tf.constant(batch)))

  assert loss(trained) < 0.7 * loss(initial)


@pytest.mark.slow
def test_student_exports_builtin_with_quantized_embed(first_run):
  config, result = first_run
  training = result.export.manifests["training"]
  assert training.mode == "builtin" and training.flex_ops == ()
  assert training.model.task == "distillation"
  assert set(result.export.manifests) == {"training", "embed_int8"}
  assert os.path.exists(os.path.join(config.out_dir, "export", "training",
                                     "model.tflite"))


@pytest.mark.slow
def test_writes_report_csv_and_chart(first_run):
  config, result = first_run
  with open(os.path.join(config.out_dir, "results.csv"), newline="") as f:
    lines = list(csv.reader(f))
  assert [line[0] for line in lines[1:]] == list(result.rows)
  with open(os.path.join(config.out_dir, "report.md")) as f:
    report = f.read()
  assert "## Goals" in report and "Select-TF (Flex) ops: none" in report
  with open(os.path.join(config.out_dir, "results.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  command = next(line for line in report.splitlines()
                 if line.startswith("python -m benchmarks.distill_main"))
  cli.parse(distill_main.FLAGS, ["distill_main", *shlex.split(command)[3:]])
  assert repr(distill_main.config_from_flags()) == repr(config)


def test_config_rejects_bad_values():
  with pytest.raises(ValueError, match="quantizations"):
    DistillConfig(quantizations=("int4",))
  with pytest.raises(ValueError, match="student_encoder"):
    DistillConfig(student_encoder="huge")
  with pytest.raises(FileNotFoundError, match="no saved model"):
    saved_model_dir("/nonexistent")
