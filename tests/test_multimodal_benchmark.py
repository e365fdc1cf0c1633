"""The multimodal study (benchmarks.multimodal) in its tiny quick setting."""

import csv
import os

import pytest

from benchmarks import multimodal_main
from benchmarks.multimodal import (DIGITS, NO_LEARNING, NUM_TEST_SUFFIX,
                                   PARAMS, RANDOM_INIT, STDERR_SUFFIX,
                                   SEPARATE_FEDERATED, SHARED_CENTRALIZED,
                                   SHARED_FEDERATED, MultimodalBenchmarkConfig,
                                   mix_label, run_multimodal_benchmark,
                                   target_checks)
from model import cli


@pytest.mark.slow  # ~65 s on 2 cores: three TFF processes are traced.
def test_quick_setting_writes_rows_report_and_plots(tmp_path):
  config = MultimodalBenchmarkConfig(
      corpus="tiny", digit_groups=4, max_digits=120, encoder="tiny",
      num_clients=4, rounds=1, clients_per_round=4, batch_size=4,
      max_local_steps=1, ablation_mixes=((0.5, 0.5, 0.0),), tsne_points=30,
      probe_folds=2, out_dir=str(tmp_path / "out"))
  rows = run_multimodal_benchmark(config, show_progress=False)
  assert list(rows) == [RANDOM_INIT, NO_LEARNING, SHARED_FEDERATED,
                        SEPARATE_FEDERATED, SHARED_CENTRALIZED,
                        mix_label((0.5, 0.5, 0.0))]
  # Two folds: every digit is tested once; a standard error per probe.
  assert all(row[DIGITS + NUM_TEST_SUFFIX] == 120 for row in rows.values())
  assert all(0.0 <= row[DIGITS + STDERR_SUFFIX] <= 0.5
             for row in rows.values())
  shared, separate = rows[SHARED_FEDERATED], rows[SEPARATE_FEDERATED]
  assert 2 * shared[PARAMS] == separate[PARAMS]
  # The separate encoders saw exactly the shared run's examples.
  assert shared["audio examples"] == separate["audio examples"] > 0
  assert shared["image examples"] == separate["image examples"] > 0
  assert rows[SHARED_CENTRALIZED]["audio examples"] == shared["audio examples"]
  assert all(0.0 <= row[DIGITS] <= 1.0 for row in rows.values())
  assert any(c.startswith("audio ") and "keyword" in c for c in shared)
  out = config.out_dir
  with open(os.path.join(out, "results.csv")) as f:
    lines = list(csv.reader(f))
  assert [line[0] for line in lines[1:]] == list(rows)
  with open(os.path.join(out, "report.md")) as f:
    report = f.read()
  assert report.count("met**: ") == 3 and f"| {SHARED_FEDERATED} |" in report
  assert f"| {NO_LEARNING} |" in report and "2-fold cross-validated" in report
  assert "Test predictions per probe: " in report and " ± " in report
  assert "`ablation.png`" in report  # only named when the ablation ran
  # The JSON keeps the config as given; the lr in effect is stated with it.
  assert ("(`client_learning_rate` null: the fedavg client optimizer's "
          f"default, {config.client_lr:g}):") in report
  for plot in ("tsne.png", "probes.png", "ablation.png"):
    with open(os.path.join(out, plot), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  # A rerun reloads every finished run: same models, same scores.
  stamps = {d: os.path.getmtime(os.path.join(out, "runs", d, "model",
                                             "weights.npz"))
            for d in os.listdir(os.path.join(out, "runs"))}
  assert len(stamps) == 5
  assert run_multimodal_benchmark(config, show_progress=False) == rows
  assert stamps == {d: os.path.getmtime(os.path.join(
      out, "runs", d, "model", "weights.npz")) for d in stamps}


def _row(probe, digits, params=100.0):
  return {"audio keyword": probe, DIGITS: digits, PARAMS: params,
          "audio examples": 1000.0 * probe, "audio share": probe}


def test_target_checks_measure_each_target():
  rows = {RANDOM_INIT: _row(0.2, 0.3), SHARED_FEDERATED: _row(0.6, 0.8),
          SEPARATE_FEDERATED: _row(0.61, 0.79, 200.0),
          SHARED_CENTRALIZED: _row(0.62, 0.82)}
  assert [met for _, met, _ in target_checks(rows)] == [True, True, True]
  rows[SEPARATE_FEDERATED] = _row(0.65, 0.79, 200.0)  # 5 points behind.
  rows[RANDOM_INIT] = _row(0.2, 0.7)  # Only 10 points on digits.
  rows[SHARED_CENTRALIZED] = _row(0.7, 0.82)  # 86% of centralized.
  checks = target_checks(rows)
  assert [met for _, met, _ in checks] == [False, False, False]
  assert "audio keyword -5.0 pts" in checks[0][2]
  for row in rows.values():
    row.update({"audio keyword" + STDERR_SUFFIX: 0.03,
                DIGITS + STDERR_SUFFIX: 0.04})
  checks = target_checks(rows)
  # Standard errors of 3 (4) points in both rows: 3 (4) x sqrt(2).
  assert "audio keyword -5.0 ± 4.2 pts" in checks[0][2]
  assert "digits +10.0 ± 5.7 pts" in checks[1][2]
  assert all("audio examples" not in detail and "audio share" not in detail
             for _, _, detail in checks)


@pytest.mark.parametrize("change, match", [
    (dict(task="triplet"), r"cannot train on images.*nt_xent"),
    (dict(mix=(0.5, 0.5, 0.5)), "sum to 1"),
    (dict(ablation_mixes=((1.0, 0.0),)), "audio_only, image_only, both"),
    (dict(encoder="huge"), "encoder"), (dict(rounds=0), "rounds"),
    (dict(pooling="mean"), r"pooling.*'mean'.*stats"),
    (dict(centralized_optimizer="lamb"), r"centralized_optimizer.*'lamb'.*sgd"),
])
def test_config_rejects_invalid_values(change, match):
  with pytest.raises(ValueError, match=match):
    MultimodalBenchmarkConfig(**change)


def test_mimelite_clients_step_with_adam():
  mime = MultimodalBenchmarkConfig(algorithm="mimelite",
                                   client_learning_rate=1e-3)
  algorithm = mime.simulation((0.25, 0.25, 0.5), ("audio", "image")).algorithm
  assert (algorithm.algorithm, algorithm.client_optimizer,
          algorithm.client_learning_rate) == ("mimelite", "adam", 1e-3)
  fedavg = MultimodalBenchmarkConfig().simulation((0.25, 0.25, 0.5),
                                                  ("audio",)).algorithm
  assert (fedavg.client_optimizer, fedavg.client_learning_rate) == ("sgd",
                                                                    0.05)
  # Without a client step size, MimeLite's Adam takes Adam's default, not
  # the SGD one (0.05 diverges under Adam).
  default = MultimodalBenchmarkConfig(algorithm="mimelite").simulation(
      (0.25, 0.25, 0.5), ("audio",)).algorithm
  assert (default.client_optimizer, default.client_learning_rate) == (
      "adam", 1e-3)
  with pytest.raises(ValueError, match="client_learning_rate must be "
                     "positive"):
    MultimodalBenchmarkConfig(client_learning_rate=0.0)


def test_pooling_reaches_every_run_s_encoder():
  spec = MultimodalBenchmarkConfig(encoder="tiny", pooling="stats").spec
  assert spec.encoder.pooling == "stats" and spec.encoder.name == "tiny"


def test_launcher_usage_error_names_the_image_tasks():
  cli.parse(multimodal_main.FLAGS, ["multimodal_main", "--task=triplet",
                                    "--out_dir=/nonexistent/never_written"])
  with pytest.raises(cli.UserError) as caught:
    multimodal_main.config_from_flags()
  assert "--task=triplet cannot train on images" in str(caught.value)
  assert "nt_xent" in str(caught.value)
