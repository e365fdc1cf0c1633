"""The federated-vs-centralized benchmark, tiny: pairings and validation tuning."""

import csv
import dataclasses
import json
import math
import os

import numpy as np
import psutil
import pytest

from benchmarks import federated_quality as fq
from benchmarks import quality_seeds
from model import evaluation
from model.datasets.clips import read_manifest_csv
from model.ssl_model import SSLModel


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _workers_left():
  return [c for c in psutil.Process().children(recursive=True)
          if c.status() != psutil.STATUS_ZOMBIE]


def test_validation_split_is_disjoint_from_test(tiny_corpus_dir):
  table = read_manifest_csv(os.path.join(tiny_corpus_dir, "manifest.csv"))
  tasks = [t for t in evaluation.default_tasks(table) if t != "instrument"]
  assert "keyword" in tasks and evaluation.SPEAKER_TASK in tasks
  for task in tasks:
    labelled = table.with_label(task)
    train, test = evaluation.split_for_task(table, task)
    fit, validation = evaluation.validation_split_for_task(table, task)
    assert len(fit) and len(validation), task
    parts = [{labelled[int(i)].path for i in part}
             for part in (fit, validation, test)]
    assert not parts[0] & parts[1] and not parts[2] & (parts[0] | parts[1])
    assert set(fit) | set(validation) <= set(train), task
    if task != evaluation.SPEAKER_TASK:
      speakers = [{labelled[int(i)].client_id for i in part}
                  for part in (fit, validation, test)]
      assert not speakers[0] & speakers[1], task
      assert not speakers[2] & (speakers[0] | speakers[1]), task


def _labelled_parts(table, task, parts):
  labelled = table.with_label(task)
  return [{labelled[int(i)].path for i in part} for part in parts]


def _speakers(table, task, parts):
  labelled = table.with_label(task)
  return [{labelled[int(i)].client_id for i in part} for part in parts]


def test_nested_folds_keep_each_test_fold_out_of_its_choice(tiny_corpus_dir):
  table = read_manifest_csv(os.path.join(tiny_corpus_dir, "manifest.csv"))
  for task in ("keyword", evaluation.SPEAKER_TASK):
    nested = evaluation.nested_cross_validation_splits(
        table, task, folds=2, validation_folds=2, seed=3)
    assert len(nested) == 2
    tested = [set(fold.test.tolist()) for fold in nested]
    assert not tested[0] & tested[1]
    for fold in nested:
      assert len(fold.inner) == 2 and len(fold.test), task
      train, test = _labelled_parts(table, task, (fold.train, fold.test))
      assert not train & test, task
      for fit, validation in fold.inner:
        fit_paths, validation_paths = _labelled_parts(table, task,
                                                      (fit, validation))
        assert fit_paths and validation_paths, task
        assert not fit_paths & validation_paths, task
        assert fit_paths | validation_paths <= train, task
        if task != evaluation.SPEAKER_TASK:
          fit_s, validation_s, test_s = _speakers(table, task,
                                                  (fit, validation, fold.test))
          assert not fit_s & validation_s and not test_s & (fit_s
                                                            | validation_s)
  # One fold at each level is the single split of earlier reports.
  (single,) = evaluation.nested_cross_validation_splits(
      table, "keyword", folds=1, validation_folds=1, seed=3)
  train, test = evaluation.split_for_task(table, "keyword", seed=3)
  fit, validation = evaluation.validation_split_for_task(table, "keyword",
                                                         seed=3)
  np.testing.assert_array_equal(single.test, test)
  np.testing.assert_array_equal(single.train, train)
  np.testing.assert_array_equal(single.inner[0][0], fit)
  np.testing.assert_array_equal(single.inner[0][1], validation)


def _one_hot_features(table, task, rows, informative, seed):
  """Features that give away ``task``'s label on the clips (indices into
  ``table.with_label(task)``) in ``informative``; noise elsewhere."""
  labels = np.asarray(table.with_label(task).labels_of(task))
  classes = {c: i for i, c in enumerate(sorted(set(labels)))}
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(len(rows), len(classes)))
  for i in informative:
    x[i] = 0.0
    x[i, classes[labels[i]]] = 5.0
  return x


def test_nested_selection_chooses_on_validation_folds_only(tiny_corpus_dir):
  table = read_manifest_csv(os.path.join(tiny_corpus_dir, "manifest.csv"))
  task = evaluation.SPEAKER_TASK
  labelled = table.with_label(task)
  rows = np.asarray([i for i, clip in enumerate(table) if task in clip.labels])
  nested = evaluation.nested_cross_validation_splits(
      table, task, folds=2, validation_folds=2, seed=0)
  everywhere = np.arange(len(labelled))
  candidates = {
      # Gives the label away on fold 0's test clips only: no validation
      # signal in fold 0, so a nested choice must not take it there.
      "test leak": _one_hot_features(table, task, rows, nested[0].test, 1),
      # Gives it away on every other clip.
      "weak": _one_hot_features(table, task, rows, everywhere[::2], 2),
      "noise": _one_hot_features(table, task, rows, [], 3),
  }
  selection = evaluation.nested_probe_selection(
      candidates, rows, table, tasks=[task], folds=2, validation_folds=2,
      seed=0)
  assert selection.picks[0] == "weak"
  assert selection.num_test[task] == sum(len(f.test) for f in nested)
  assert selection.validation["weak"][task] > selection.validation["noise"][
      task]
  assert selection.times_picked("noise") == 0
  assert sum(selection.times_picked(n) for n in candidates) == 2
  assert selection.most_picked in candidates
  assert selection.stderr[task] == pytest.approx(evaluation.binomial_stderr(
      selection.accuracy[task], selection.num_test[task]))
  # The pooled test accuracy is each fold's pick scored on its test part.
  correct = 0
  for fold, pick in zip(nested, selection.picks):
    x = candidates[pick]
    y = np.asarray(labelled.labels_of(task))
    accuracy = evaluation.linear_probe(x[fold.train], y[fold.train],
                                       x[fold.test], y[fold.test])
    correct += accuracy * len(fold.test)
  assert selection.accuracy[task] == pytest.approx(
      correct / selection.num_test[task])
  with pytest.raises(ValueError, match="4 embeddings"):
    evaluation.nested_probe_selection(
        {"short": candidates["weak"][:4]}, rows, table, tasks=[task],
        folds=2, validation_folds=2)


@pytest.mark.slow
def test_benchmark_tunes_on_validation_and_pairs_runs(tiny_corpus_dir,
                                                      tmp_path):
  config = fq.FederatedQualityConfig(
      corpus="tiny", corpus_dir=tiny_corpus_dir, task="triplet",
      encoder="tiny",
      algorithms=("fedavg", "fedadam"), rounds=1, clients_per_round=2,
      batch_size=2, max_local_steps=1, eval_every=1,
      sgd_server_learning_rates=(0.5, 1.0),
      adaptive_server_learning_rates=(1e-3, 1e-2),
      centralized_sgd_learning_rates=(0.01, 0.05),
      centralized_adam_learning_rates=(1e-3, 3e-3), probe_folds=1,
      validation_folds=1, out_dir=str(tmp_path))
  rows = fq.run_federated_quality_benchmark(config, show_progress=False)
  assert not _workers_left()
  sgd, adam = fq.centralized_label("sgd"), fq.centralized_label("adam")
  assert list(rows) == [fq.RANDOM_INIT, evaluation.LOGMEL_BASELINE, sgd, adam,
                        "fedavg", "fedadam"]
  tasks = ["content", "keyword", "speaker"]
  for name, values in rows.items():
    assert all(0 <= values[t] <= 1 for t in tasks), name
    assert all(math.isfinite(v) and v >= 0 for v in values.values()), name
  # Like with like: each federated row against its own centralized pair.
  for federated, central in (("fedavg", sgd), ("fedadam", adam)):
    assert rows[federated][fq.EXAMPLES] == rows[central][fq.EXAMPLES] == 2 * 2
    assert rows[federated][fq.TFLOPS] == pytest.approx(rows[central][fq.TFLOPS])
    for task in [*tasks, "retrieval_map"]:
      if rows[central][task] > 0:
        assert rows[federated][f"{task} % of centralized"] == pytest.approx(
            100 * rows[federated][task] / rows[central][task])
    assert all(rows[central][f"{t} % of centralized"] == 100.0
               for t in tasks if rows[central][t] > 0)

  # Each pick is the argmax of the written mean validation accuracy.
  validation = _read_csv(os.path.join(config.out_dir, "validation.csv"))
  groups = {"fedavg server lr": (0.5, 1.0), "fedadam server lr": (1e-3, 1e-2),
            f"{sgd} lr": (0.01, 0.05), f"{adam} lr": (1e-3, 3e-3)}
  with open(os.path.join(config.out_dir, "report.md")) as f:
    report = f.read()
  assert len(validation) == 8
  # One training step from random init: nothing collapsed, rank reported.
  assert all(float(r[fq.EFFECTIVE_RANK]) > evaluation.COLLAPSE_RANK
             and r[fq.COLLAPSED] == "0.0" for r in validation)
  assert f"{fq.EFFECTIVE_RANK} | {fq.COLLAPSED} |" in report
  for prefix, grid in groups.items():
    group = [r for r in validation if r["model"].startswith(prefix + " ")]
    assert [float(r["learning rate"]) for r in group] == list(grid)
    means = [float(r[fq.VALIDATION_MEAN]) for r in group]
    for r, mean in zip(group, means):
      assert mean == pytest.approx(np.mean([float(r[t]) for t in tasks]))
    picked = [float(r["picked"]) for r in group]
    assert picked == [float(i == int(np.argmax(means)))
                      for i in range(len(group))]
    chosen = grid[int(np.argmax(means))]
    assert os.path.isdir(os.path.join(config.out_dir, "runs",
                                      f"{prefix} {chosen:g}".replace(" ", "_")))
    assert f"{prefix.replace(' server lr', '').replace(' lr', '')} " \
           f"{chosen:g}" in report, prefix

  pairings = _read_csv(os.path.join(config.out_dir, "pairings.csv"))
  assert len(pairings) == 2
  for pairing, (federated, central) in zip(
      pairings, (("fedavg", sgd), ("fedadam", adam))):
    assert pairing["model"].startswith(f"{federated} (server lr ")
    assert f" vs {central} (lr " in pairing["model"]
    assert pairing["model"] in report
    for task in tasks:
      if rows[central][task] > 0:
        assert float(pairing[f"{task} %"]) == pytest.approx(
            rows[federated][f"{task} % of centralized"])
  results = _read_csv(os.path.join(config.out_dir, "results.csv"))
  assert [r["model"] for r in results] == list(rows)
  with open(os.path.join(config.out_dir, "quality_vs_cost.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("change", [
    dict(algorithms=()), dict(algorithms=("fedavg", "fedavg")),
    dict(algorithms=("fedavgm",)), dict(mixes=(1.5,)), dict(rounds=0),
    dict(encoder="huge"), dict(pooling="mean"),
    dict(validation_fraction=1.0),
    dict(sgd_server_learning_rates=(1.0,)),
    dict(centralized_adam_learning_rates=(1e-3, 1e-3, 1e-2)),
    dict(adaptive_server_learning_rates=(0.0, 1e-3, 1e-2)),
    dict(algorithms=("fedadam",), mixes=(0.5,)),
    dict(probe_folds=0), dict(validation_folds=0),
])
def test_federated_quality_config_rejects_invalid_values(change):
  with pytest.raises(ValueError, match="FederatedQualityConfig"):
    fq.FederatedQualityConfig(**change)


@pytest.mark.parametrize("change", [
    # 2 server lrs x 2 local-step values vs 3 learning rates x 1 batch size.
    dict(algorithms=("fedavg",), sgd_server_learning_rates=(1.0, 3.0),
         local_steps_grid=(10, 5)),
    # 3 rounds x 10 local steps is not a multiple of 4.
    dict(local_steps_grid=(10, 4), centralized_batch_sizes=(8, 16)),
    dict(local_steps_grid=(5, 5)), dict(centralized_batch_sizes=(0, 8)),
    dict(num_seeds=0), dict(client_learning_rates=(0.05, -0.1)),
    # 3 x 2 client lrs x 1 vs 3 x 1: the centralized side needs 2 batch sizes.
    dict(client_learning_rates=(0.05, 0.15)),
    # FedAdam: 3 server lrs x 2 momenta vs 3 Adam learning rates.
    dict(algorithms=("fedadam",), adaptive_server_momenta=(0.9, 0.0)),
    dict(algorithms=("fedadam",), adaptive_server_momenta=(0.9, 1.0),
         centralized_adam_learning_rates=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)),
    # 2 client counts vs 1 centralized batch size.
    dict(clients_per_round_grid=(8, 2)),
    # 3 rounds x 8 clients is not a multiple of 5 clients.
    dict(clients_per_round_grid=(8, 5), centralized_batch_sizes=(8, 16)),
    dict(clients_per_round_grid=(2, 2), centralized_batch_sizes=(8, 16)),
    # 3 x 8 / 4 = 6 rounds x 10 steps is not a multiple of 7 local steps.
    dict(clients_per_round_grid=(8, 4), local_steps_grid=(10, 7),
         centralized_batch_sizes=(1, 2, 4, 8)),
])
def test_tuning_budget_and_schedules_are_checked(change):
  base = dict(rounds=3, eval_every=3)
  with pytest.raises(ValueError, match="FederatedQualityConfig"):
    fq.FederatedQualityConfig(**{**base, **change})


def test_pooling_reaches_every_run_s_encoder():
  config = fq.FederatedQualityConfig(pooling="max_stats")
  assert config.spec.encoder.pooling == "max_stats"
  assert fq.FederatedQualityConfig().spec.encoder.pooling == "max"


def test_local_step_schedules_keep_the_examples_equal():
  config = fq.FederatedQualityConfig(
      rounds=4, max_local_steps=5, eval_every=2, local_steps_grid=(5, 2, 1),
      centralized_batch_sizes=(8, 16, 32))
  assert config.seeds == (0,)
  for k, rounds, eval_every in ((5, 4, 2), (2, 10, 5), (1, 20, 10)):
    sim = config.simulation("fedavg", fq.PartitionConfig(), 1.0, k)
    assert (sim.rounds, sim.max_local_steps, sim.eval_every) == (
        rounds, k, eval_every)
    assert sim.rounds * sim.max_local_steps == 20
  single = fq.FederatedQualityConfig(rounds=4, max_local_steps=5)
  assert single.local_steps == (5,) and single.batch_sizes == (8,)
  assert single.client_lrs == (0.05,)
  assert single.simulation("fedavg", fq.PartitionConfig(), 1.0).rounds == 4


def test_clients_per_round_is_a_tuned_axis_at_equal_examples():
  config = fq.FederatedQualityConfig(
      rounds=80, clients_per_round=8, max_local_steps=5, eval_every=40,
      clients_per_round_grid=(8, 2), local_steps_grid=(5, 1),
      centralized_batch_sizes=(8, 16, 32, 64))
  assert config.clients == (8, 2)
  for c, k, rounds in ((8, 5, 80), (8, 1, 400), (2, 5, 320), (2, 1, 1600)):
    sim = config.simulation("fedavg", fq.PartitionConfig(), 1.0, k,
                            clients=c)
    assert (sim.rounds, sim.clients_per_round, sim.max_local_steps) == (
        rounds, c, k)
    assert sim.rounds * sim.clients_per_round * sim.max_local_steps == 3200
    assert sim.eval_every == 40 * rounds // 80
  # Without the grid: the configured clients, whatever is asked.
  single = fq.FederatedQualityConfig(rounds=80, clients_per_round=8)
  assert single.clients == (8,)
  assert single.rounds_for(5) == single.rounds_for(5, 8) == 80


def test_client_learning_rates_are_a_tuned_axis():
  config = fq.FederatedQualityConfig(
      client_learning_rates=(0.05, 0.15), centralized_batch_sizes=(8, 32))
  assert config.client_lrs == (0.05, 0.15)
  sim = config.simulation("fedadam", fq.PartitionConfig(), 0.1,
                          client_learning_rate=0.15)
  assert sim.algorithm.client_learning_rate == 0.15
  assert sim.algorithm.server_learning_rate == 0.1
  assert (sim.rounds, sim.max_local_steps) == (config.rounds,
                                               config.max_local_steps)


def test_server_momenta_are_a_tuned_axis_of_adaptive_algorithms_only():
  config = fq.FederatedQualityConfig(
      adaptive_server_momenta=(0.9, 0.0), sgd_server_learning_rates=(1.0, 3.0,
                                                                     10.0),
      adaptive_server_learning_rates=(0.03, 0.1, 0.3),
      centralized_adam_learning_rates=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2))
  # FedAvg keeps its 3 candidates (and 3 centralized SGD ones); FedAdam and
  # FedYogi try 3 x 2, as many as centralized Adam's 6 learning rates.
  assert config.server_momenta("fedavg") == (None,)
  assert config.server_momenta("fedadam") == (0.9, 0.0)
  sim = config.simulation("fedadam", fq.PartitionConfig(), 0.1,
                          server_momentum=0.0)
  assert sim.algorithm.server_momentum == 0.0
  assert sim.algorithm.server_learning_rate == 0.1
  fedavg = config.simulation("fedavg", fq.PartitionConfig(), 3.0)
  assert fedavg.algorithm == fq.AlgorithmConfig(
      algorithm="fedavg", client_learning_rate=config.client_learning_rate,
      server_learning_rate=3.0)
  default = fq.FederatedQualityConfig()
  assert default.server_momenta("fedyogi") == (0.9,)
  assert default.simulation("fedyogi", fq.PartitionConfig(),
                            0.1).algorithm.server_momentum == 0.9


def test_mimelite_tries_the_centralized_adam_step_sizes_with_client_adam():
  config = fq.FederatedQualityConfig(
      algorithms=("fedavg", "mimelite"),
      centralized_adam_learning_rates=(3e-4, 1e-3, 3e-3))
  # Like with like: the same Adam step sizes on both sides, server lr 1.
  assert config.client_grid("mimelite") == (3e-4, 1e-3, 3e-3)
  assert config.client_grid("fedavg") == (config.client_learning_rate,)
  assert config.server_grid("mimelite") == (1.0,)
  assert config.server_momenta("mimelite") == (None,)
  assert fq.PAIRED_OPTIMIZER["mimelite"] == "adam"
  sim = config.simulation("mimelite", fq.PartitionConfig(), 1.0,
                          client_learning_rate=1e-3)
  assert sim.algorithm == fq.AlgorithmConfig(
      algorithm="mimelite", client_optimizer="adam",
      client_learning_rate=1e-3, server_learning_rate=1.0)
  assert config.simulation("fedavg", fq.PartitionConfig(),
                           1.0).algorithm.client_optimizer == "sgd"
  # No client step size given: the first of the algorithm's own grid (Adam
  # step sizes for MimeLite, never the SGD default).
  assert config.simulation("mimelite", fq.PartitionConfig(),
                           1.0).algorithm.client_learning_rate == 3e-4
  assert config.simulation("fedavg", fq.PartitionConfig(),
                           1.0).algorithm.client_learning_rate == 0.05
  own = fq.FederatedQualityConfig(
      algorithms=("mimelite",), mime_learning_rates=(1e-3, 2e-3, 4e-3))
  assert own.client_grid("mimelite") == (1e-3, 2e-3, 4e-3)
  # 2 MimeLite learning rates vs 3 centralized Adam ones.
  with pytest.raises(ValueError, match="mimelite evaluates 2 candidates"):
    fq.FederatedQualityConfig(algorithms=("mimelite",),
                              mime_learning_rates=(1e-3, 3e-3))
  with pytest.raises(ValueError, match="mime_learning_rates"):
    fq.FederatedQualityConfig(algorithms=("mimelite",),
                              mime_learning_rates=(1e-3, -1e-3, 3e-3))


def _one_round_study(corpus_dir, out_dir, **changes):
  """One round of 2 clients x 1 step of batch 2, temporal_gap, single
  probe split: the quick study config that ``changes`` adapt."""
  return fq.FederatedQualityConfig(**{
      **dict(corpus="tiny", corpus_dir=corpus_dir, task="temporal_gap",
             encoder="tiny", rounds=1, clients_per_round=2, batch_size=2,
             max_local_steps=1, eval_every=1, probe_folds=1,
             validation_folds=1, out_dir=str(out_dir)), **changes})


@pytest.mark.slow
def test_benchmark_runs_each_server_momentum_of_fedadam(tiny_corpus_dir,
                                                        tmp_path):
  config = _one_round_study(
      tiny_corpus_dir, tmp_path, algorithms=("fedadam",),
      adaptive_server_learning_rates=(1e-2,), adaptive_server_momenta=(0.9, 0),
      centralized_adam_learning_rates=(1e-3, 3e-3))
  fq.run_federated_quality_benchmark(config, show_progress=False)
  assert not _workers_left()
  validation = {r["model"]: r for r in _read_csv(tmp_path / "validation.csv")}
  labels = ["fedadam server lr 0.01 momentum 0.9",
            "fedadam server lr 0.01 momentum 0"]
  assert list(validation)[:2] == labels
  for label, momentum in zip(labels, (0.9, 0.0)):
    assert float(validation[label][fq.SERVER_MOMENTUM]) == momentum
    with open(tmp_path / "runs" / label.replace(" ", "_") / "config.json") as f:
      algorithm = json.load(f)["algorithm"]
    assert algorithm["server_momentum"] == momentum
    assert algorithm["server_learning_rate"] == 0.01
  (pairing,) = _read_csv(tmp_path / "pairings.csv")
  picked = [label for label in labels if float(validation[label]["picked"])]
  assert len(picked) == 1
  assert pairing["model"].startswith(
      f"fedadam (server lr 0.01, momentum {picked[0].split()[-1]}) vs ")
  with open(tmp_path / "report.md") as f:
    assert "x server momentum (beta_1) of every adaptive run (0.9, 0)" in (
        f.read())


@pytest.mark.slow
def test_benchmark_runs_each_number_of_clients_per_round(tiny_corpus_dir,
                                                         tmp_path):
  config = _one_round_study(
      tiny_corpus_dir, tmp_path, algorithms=("fedavg",),
      sgd_server_learning_rates=(1.0,), clients_per_round_grid=(2, 1),
      centralized_sgd_learning_rates=(0.05,), centralized_batch_sizes=(2, 4))
  fq.run_federated_quality_benchmark(config, show_progress=False)
  assert not _workers_left()
  validation = {r["model"]: r for r in _read_csv(tmp_path / "validation.csv")}
  labels = ["fedavg server lr 1 clients 2", "fedavg server lr 1 clients 1"]
  assert list(validation)[:2] == labels
  for label, clients, rounds in zip(labels, (2, 1), (1, 2)):
    assert (float(validation[label][fq.CLIENTS]),
            float(validation[label][fq.ROUNDS])) == (clients, rounds)
    with open(tmp_path / "runs" / label.replace(" ", "_") / "config.json") as f:
      run = json.load(f)
    assert (run["clients_per_round"], run["rounds"]) == (clients, rounds)
  # One client for two rounds sees as many examples as two for one.
  rows = {r["model"]: r for r in _read_csv(tmp_path / "results.csv")}
  assert float(rows["fedavg"][fq.EXAMPLES]) == 2 * 1 * 2
  with open(tmp_path / "report.md") as f:
    assert "x clients per round of every federated run (2, 1)" in f.read()


@pytest.mark.slow
def test_benchmark_runs_mimelite_with_client_adam_and_its_costs(
    tiny_corpus_dir, tmp_path):
  config = _one_round_study(
      tiny_corpus_dir, tmp_path, algorithms=("mimelite",),
      centralized_adam_learning_rates=(1e-3, 3e-3))
  rows = fq.run_federated_quality_benchmark(config, show_progress=False)
  assert not _workers_left()
  validation = {r["model"]: r for r in _read_csv(tmp_path / "validation.csv")}
  labels = ["mimelite server lr 1 client lr 0.001",
            "mimelite server lr 1 client lr 0.003"]
  assert list(validation)[:2] == labels
  for label, lr in zip(labels, (1e-3, 3e-3)):
    with open(tmp_path / "runs" / label.replace(" ", "_") / "config.json") as f:
      algorithm = json.load(f)["algorithm"]
    assert (algorithm["client_optimizer"], algorithm["client_learning_rate"],
            algorithm["server_learning_rate"]) == ("adam", lr, 1.0)
  (pairing,) = _read_csv(tmp_path / "pairings.csv")
  assert pairing["model"].startswith("mimelite (server lr 1, client lr ")
  assert " vs centralized adam (lr " in pairing["model"]
  # Same examples as centralized Adam at twice its compute (the full-batch
  # gradient pass); weights + two moments down, delta + gradient up.
  mime, central = rows["mimelite"], rows["centralized adam"]
  assert mime[fq.EXAMPLES] == central[fq.EXAMPLES]
  assert mime[fq.TFLOPS] == pytest.approx(2 * central[fq.TFLOPS])
  model = SSLModel(config.spec)
  params = sum(int(np.prod(w.shape)) for w in model.weights)
  assert mime[fq.WIRE_MB] == pytest.approx(2 * (3 + 2) * 4 * params / 1e6)


@pytest.mark.slow
def test_seeds_tune_schedules_and_batch_sizes_with_equal_budgets(
    tiny_corpus_dir, tmp_path):
  config = fq.FederatedQualityConfig(
      corpus="tiny", corpus_dir=tiny_corpus_dir, task="triplet",
      encoder="tiny", algorithms=("fedavg",), rounds=1, clients_per_round=2,
      batch_size=2, max_local_steps=2, eval_every=1,
      sgd_server_learning_rates=(1.0,), local_steps_grid=(2, 1),
      centralized_sgd_learning_rates=(0.05,), centralized_batch_sizes=(2, 4),
      probe_folds=2, validation_folds=2, num_seeds=2, out_dir=str(tmp_path))
  summary = fq.run_federated_quality_seeds(config, show_progress=False)
  assert not _workers_left()
  tasks = ["content", "keyword", "speaker"]
  per_seed = {}
  for seed in (0, 1):
    seed_dir = tmp_path / f"seed_{seed}"
    validation = {r["model"]: r for r in _read_csv(seed_dir /
                                                   "validation.csv")}
    # Two candidates on each side, at the same number of examples.
    assert list(validation) == [
        "fedavg server lr 1 local steps 2", "fedavg server lr 1 local steps 1",
        "centralized sgd lr 0.05 batch 2", "centralized sgd lr 0.05 batch 4"]
    assert [(float(validation[k]["rounds"]),
             float(validation[k]["local steps"]))
            for k in list(validation)[:2]] == [(1, 2), (2, 1)]
    assert [(float(validation[k]["steps"]), float(validation[k]["batch size"]))
            for k in list(validation)[2:]] == [(4, 2), (2, 4)]
    # Nested choice: one pick per test fold on each side.
    for side in (list(validation)[:2], list(validation)[2:]):
      assert sum(float(validation[k]["picked"]) for k in side) == 2
      for k in side:
        assert float(validation[k][fq.VALIDATION_MEAN]) == pytest.approx(
            np.mean([float(validation[k][t]) for t in tasks]))
    rows = {r["model"]: r for r in _read_csv(seed_dir / "results.csv")}
    assert float(rows["fedavg"][fq.EXAMPLES]) == 2 * 2 * 2
    assert float(rows["centralized sgd"][fq.EXAMPLES]) == 2 * 2 * 2
    (pairing,) = _read_csv(seed_dir / "pairings.csv")
    assert pairing["model"].startswith("fedavg (server lr 1, ")
    assert " of 2 folds) vs centralized sgd (lr 0.05, batch " in pairing[
        "model"]
    per_seed[seed] = {t: float(pairing[f"{t} %"]) for t in tasks
                      if pairing.get(f"{t} %")}
    with open(seed_dir / "report.md") as f:
      assert f'"seed": {seed}' in f.read()
  assert set(per_seed[0]) == set(per_seed[1]) and per_seed[0]
  for task in per_seed[0]:
    values = [per_seed[s][task] for s in (0, 1)]
    assert summary["fedavg"][f"{task} % mean"] == pytest.approx(
        np.mean(values))
    assert summary["fedavg"][f"{task} % std"] == pytest.approx(
        np.std(values, ddof=1))
    assert summary["fedavg"][f"{task} % min"] == pytest.approx(min(values))
  seeds = _read_csv(tmp_path / "seeds.csv")
  assert [r["model"] for r in seeds] == ["fedavg seed 0", "fedavg seed 1"]
  with open(tmp_path / "report.md") as f:
    report = f.read()
  assert "fedavg vs centralized sgd" in report and "seed 1:" in report


_SEED_SCORES = {0: {"fedavg": (96.0, 80.0), "fedadam": (99.0, 97.0)},
                1: {"fedavg": (98.0, 90.0), "fedadam": (101.0, 93.0)}}


def _fake_benchmark(config, show_progress):
  """Writes what a finished per-seed benchmark leaves for the summary."""
  del show_progress
  os.makedirs(config.out_dir, exist_ok=True)
  evaluation.write_csv(
      {f"{a} (server lr 1) vs centralized x (lr 1)":
           {"content %": c, "speaker %": s}
       for a, (c, s) in _SEED_SCORES[config.seed].items()},
      os.path.join(config.out_dir, "pairings.csv"))
  with open(os.path.join(config.out_dir, fq.CONFIG_FILE), "w") as f:
    json.dump(dataclasses.asdict(config), f)


def test_seed_summary_is_mean_std_and_worst_seed(tmp_path, monkeypatch):
  # Each seed's benchmark writes its pairings; the summary aggregates them.
  def fake_benchmark(config, show_progress):
    assert config.num_seeds == 1 and config.corpus_dir == str(
        tmp_path / "corpus")
    _fake_benchmark(config, show_progress)

  monkeypatch.setattr(fq, "run_federated_quality_benchmark", fake_benchmark)
  config = fq.FederatedQualityConfig(algorithms=("fedavg", "fedadam"),
                                     num_seeds=2, out_dir=str(tmp_path))
  summary = fq.run_federated_quality_seeds(config, show_progress=False)
  assert summary["fedavg"] == pytest.approx({
      "content % mean": 97.0, "content % std": math.sqrt(2),
      "content % min": 96.0, "speaker % mean": 85.0,
      "speaker % std": math.sqrt(50), "speaker % min": 80.0})
  assert summary["fedadam"]["speaker % mean"] == pytest.approx(95.0)
  with open(tmp_path / "report.md") as f:
    report = f.read()
  assert "| fedavg vs centralized sgd | 97.0 ± 1.4 | 85.0 ± 7.1 |" in report
  assert "`speaker` 85.0%" in report
  # fedadam: met on the mean (95.0), not on its worst seed (93.0).
  assert ("fedadam vs centralized adam: goal >= 95% on the mean met on every "
          "probe; on every seed NOT met (worst seed): `speaker` 93.0%"
          in report)
  # 95 % Student-t intervals over two seeds (t = 12.706): neither decides.
  assert ("| fedavg vs centralized sgd | speaker | 2 | 85.0 | 21.5 to 148.5 | "
          "undecided | 11 |" in report)
  assert ("| fedadam vs centralized adam | content | 2 | 100.0 | 87.3 to "
          "112.7 | undecided | 3 |" in report)
  assert [r["model"] for r in _read_csv(tmp_path / "seeds.csv")] == [
      "fedavg seed 0", "fedadam seed 0", "fedavg seed 1", "fedadam seed 1"]
  with open(tmp_path / "summary.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_seed_report_places_each_interval_against_the_goal():
  stat = quality_seeds.SeedStatistics
  lines = fq._precision_lines({  # pylint: disable=protected-access
      "fedavg": {"content %": stat((99.0, 100.0, 101.0)),
                 "keyword %": stat((94.0, 95.0, 96.0)),
                 "speaker %": stat((80.0, 81.0, 82.0)),
                 "instrument %": stat((90.0,))}})
  # mean +- 4.303 * 1 / sqrt(3) = +-2.48; +-5 needs 3 seeds at that spread.
  assert ("| fedavg vs centralized sgd | content | 3 | 100.0 | 97.5 to 102.5 "
          "| above | 3 |") in lines
  assert ("| fedavg vs centralized sgd | keyword | 3 | 95.0 | 92.5 to 97.5 "
          "| undecided | 3 |") in lines
  assert ("| fedavg vs centralized sgd | speaker | 3 | 81.0 | 78.5 to 83.5 "
          "| below | 3 |") in lines
  # One seed has no spread: no interval.
  assert "| fedavg vs centralized sgd | instrument | 1 | 90.0 | - | - | - |" in (
      lines)


def test_seeds_run_separately_combine_into_the_same_summary(tmp_path,
                                                           monkeypatch):
  monkeypatch.setattr(fq, "run_federated_quality_benchmark", _fake_benchmark)
  study = fq.FederatedQualityConfig(algorithms=("fedavg", "fedadam"),
                                    num_seeds=2, out_dir=str(tmp_path))
  for seed, workers in ((0, 1), (1, 2)):  # e.g. one machine per seed
    fq.run_federated_quality_seeds(dataclasses.replace(
        study, seed=seed, num_seeds=1, num_workers=workers,
        corpus_dir=str(tmp_path / f"corpus_{seed}"),
        out_dir=str(tmp_path / f"seed_{seed}")), show_progress=False)
  assert not (tmp_path / "report.md").exists()
  summary = fq.combine_federated_quality_seeds(study)
  assert summary["fedavg"] == pytest.approx({
      "content % mean": 97.0, "content % std": math.sqrt(2),
      "content % min": 96.0, "speaker % mean": 85.0,
      "speaker % std": math.sqrt(50), "speaker % min": 80.0})
  with open(tmp_path / "report.md") as f:
    report = f.read()
  assert "| fedavg vs centralized sgd | 97.0 ± 1.4 | 85.0 ± 7.1 |" in report
  assert "Combined from the seeds' separate invocations" in report
  assert len(_read_csv(tmp_path / "seeds.csv")) == 4

  # A seed of another study is refused, naming the file, field and values.
  path = tmp_path / "seed_1" / fq.CONFIG_FILE
  with open(path) as f:
    seed_config = json.load(f)
  with open(path, "w") as f:
    json.dump({**seed_config, "rounds": study.rounds + 10}, f)
  with pytest.raises(fq.SeedResultsMismatch,
                     match=rf"seed_1/config.json: seed 1 .*rounds: expected "
                           rf"{study.rounds}, got {study.rounds + 10}"):
    fq.combine_federated_quality_seeds(study)
  # Seeds written before the pooling field ran with global max pooling.
  with open(path, "w") as f:
    json.dump({k: v for k, v in seed_config.items() if k != "pooling"}, f)
  fq.combine_federated_quality_seeds(study)
  with pytest.raises(fq.SeedResultsMismatch,
                     match="pooling: expected 'stats', got 'max'"):
    fq.combine_federated_quality_seeds(
        dataclasses.replace(study, pooling="stats"))
  with open(path, "w") as f:
    json.dump(seed_config, f)
  # A seed that has not finished is named.
  with pytest.raises(FileNotFoundError, match="seed_2"):
    fq.combine_federated_quality_seeds(
        dataclasses.replace(study, num_seeds=3))
  with pytest.raises(ValueError, match="num_seeds >= 2, got 1"):
    fq.combine_federated_quality_seeds(
        dataclasses.replace(study, num_seeds=1))


def test_diverged_candidates_are_never_picked(tiny_corpus_dir):
  table = read_manifest_csv(os.path.join(tiny_corpus_dir, "manifest.csv"))
  task = evaluation.SPEAKER_TASK
  rows = np.asarray([i for i, clip in enumerate(table) if task in clip.labels])
  everywhere = np.arange(len(rows))
  config = fq.FederatedQualityConfig(probe_folds=2, validation_folds=2)
  validation = {"a": {}, "b": {fq.DIVERGED: 1.0}, "c": {}}
  embeddings = {"a": _one_hot_features(table, task, rows, [], 1),
                "c": _one_hot_features(table, task, rows, everywhere, 2)}
  selection = fq._select(validation, ["a", "b", "c"], embeddings, rows,  # pylint: disable=protected-access
                         table, [task], config)
  assert selection.picks == ("c", "c") and selection.most_picked == "c"
  assert [validation[k]["picked"] for k in "abc"] == [0.0, 0.0, 2.0]
  assert task not in validation["b"] and fq.VALIDATION_MEAN not in validation[
      "b"]
  assert validation["c"][fq.VALIDATION_MEAN] == validation["c"][task]
  with pytest.raises(RuntimeError, match="every candidate diverged.*b"):
    fq._select({"b": {fq.DIVERGED: 1.0}}, ["b"], {}, rows, table, [task],  # pylint: disable=protected-access
               config)


def test_non_finite_weights_are_their_own_error():
  import numpy as np  # pylint: disable=g-import-not-at-top
  from model.errors import NonFiniteWeightsError  # pylint: disable=g-import-not-at-top
  from model.ssl_model import ModelSpec, SSLModel, assign_weights  # pylint: disable=g-import-not-at-top
  from model.encoders import ENCODERS  # pylint: disable=g-import-not-at-top
  model = SSLModel(ModelSpec(task="triplet", encoder=ENCODERS["tiny"]))
  weights = {name: np.array(w.numpy()) for name, w in
             zip(model.weight_names, model.weights)}
  name = model.weight_names[0]
  weights[name].flat[0] = np.nan
  with pytest.raises(NonFiniteWeightsError, match=f"{name}.*1 non-finite"):
    assign_weights(model, weights, source="test")
  assert issubclass(NonFiniteWeightsError, ValueError)


def test_collapsed_candidates_are_flagged_and_never_picked(tiny_corpus_dir,
                                                           caplog):
  table = read_manifest_csv(os.path.join(tiny_corpus_dir, "manifest.csv"))
  task = evaluation.SPEAKER_TASK
  rows = np.asarray([i for i, clip in enumerate(table) if task in clip.labels])
  rng = np.random.default_rng(0)
  informative = _one_hot_features(table, task, rows, np.arange(len(rows)), 1)
  # Embedding-sized: the label given away, plus noise dimensions.
  healthy = np.concatenate([informative, rng.normal(size=(len(rows), 28))],
                           axis=1)
  # Finite but collapsed: every clip on one line far from the origin (the
  # label still readable along it, so a probe alone would not reject it).
  collapsed = ((1e3 + np.argmax(informative, axis=1)[:, None])
               * rng.normal(size=(1, 32)))
  config = fq.FederatedQualityConfig(probe_folds=2, validation_folds=2)
  validation = {"healthy": {}, "collapsed": {}, "diverged": {fq.DIVERGED: 1.0}}
  embeddings = {"healthy": healthy, "collapsed": collapsed}
  with caplog.at_level("WARNING"):
    selection = fq._select(  # pylint: disable=protected-access
        validation, list(validation), embeddings, rows, table, [task], config)
  assert set(selection.picks) == {"healthy"}
  assert validation["collapsed"][fq.COLLAPSED] == 1.0
  assert validation["collapsed"][fq.EFFECTIVE_RANK] == pytest.approx(1.0)
  assert validation["collapsed"]["picked"] == 0.0
  assert task not in validation["collapsed"]
  assert validation["healthy"][fq.COLLAPSED] == 0.0
  assert validation["healthy"][fq.EFFECTIVE_RANK] > 10
  assert fq.EFFECTIVE_RANK not in validation["diverged"]
  assert any(r.getMessage().startswith("collapsed collapsed (effective rank "
                                       "1.00") for r in caplog.records)
  header = fq.format_table(validation).splitlines()[0]
  assert f"| {fq.EFFECTIVE_RANK} |" in header and fq.COLLAPSED in header
  with pytest.raises(RuntimeError, match=r"every candidate diverged or "
                     r"collapsed: collapsed \(collapsed: effective rank "
                     r"1\.00 < 2\.5\); diverged \(diverged"):
    fq._select(  # pylint: disable=protected-access
        {"collapsed": {}, "diverged": {fq.DIVERGED: 1.0}},
        ["collapsed", "diverged"], embeddings, rows, table, [task], config)
