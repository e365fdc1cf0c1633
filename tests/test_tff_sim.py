"""Federated simulation: algorithms, client data, costs, resume, processes."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import tensorflow as tf

from model import cli
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.pipeline import Segments
from model.best_models import best_model_dir, read_best_index
from model.encoders import ENCODERS
from model.errors import WeightsMismatchError
from model.heads import StandardizedMLP
from model.run_dir import RunConfigMismatch
from model.ssl_model import ModelSpec, SSLModel
from model.tasks import simsiam
from tff_sim import __main__ as launcher
from tff_sim.algorithms import (ALGORITHMS, AlgorithmConfig, build_process,
                                build_server_optimizer)
from tff_sim.client_data import SegmentClientData, client_round_seed, round_dataset
from tff_sim.costs import TRAIN_FLOPS_FACTOR, CostModel
from tff_sim.execution import execution_context
from tff_sim.learning_model import model_fn_for
from tff_sim.partition import PartitionConfig
from tff_sim.simulation import SimulationConfig, run_simulation

SPEC = ModelSpec(task="triplet", encoder=ENCODERS["tiny"])
BATCH = 2


@pytest.fixture(scope="module")
def client_data():
  samples = SPEC.example_samples
  rng = np.random.default_rng(0)
  segments = Segments(
      waveforms=(0.1 * rng.standard_normal((12, samples))).astype(np.float32),
      clip_index=np.arange(12))
  return SegmentClientData(
      segments, {f"c{i}": np.arange(3 * i, 3 * i + 3) for i in range(4)})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  table = synthetic.generate_corpus(str(tmp_path_factory.mktemp("corpus")),
                                    synthetic.CORPUS_PRESETS["tiny"],
                                    show_progress=False)
  table, waveforms, _ = decode_clips(table)
  return table, waveforms


def _round_data(client_data, round_num, clients=3, steps=2):
  return [round_dataset(client_data.waveforms(c), BATCH, steps,
                        seed=client_round_seed(0, round_num, i))
          for i, c in enumerate(client_data.client_ids[:clients])]


def _train(process, client_data, rounds=2):
  state = process.initialize()
  before = process.get_model_weights(state).trainable
  for r in range(rounds):
    output = process.next(state, _round_data(client_data, r))
    state = output.state
  after = process.get_model_weights(state).trainable
  return before, after, output.metrics["client_work"]["train"]


# Each case builds and runs a TFF process (~7 s); FedAvg alone is fast.
@pytest.mark.parametrize("options", [
    options if options == dict(algorithm="fedavg") else
    pytest.param(options, marks=pytest.mark.slow)
    for options in [
        *[dict(algorithm=a) for a in ALGORITHMS if a != "mimelite"],
        dict(algorithm="mimelite", client_optimizer="adam",
             client_learning_rate=1e-3),
        dict(algorithm="mimelite", client_momentum=0.9),
        dict(algorithm="fedavg", client_optimizer="adam",
             client_learning_rate=1e-3),
        dict(algorithm="fedavg", dp_noise_multiplier=0.1, dp_clip_norm=1.0),
        dict(algorithm="fedavg", dp_noise_multiplier=0.1),
        dict(algorithm="fedavg", compression=True),
    ]], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_every_algorithm_trains_and_changes_weights(client_data, options):
  process = build_process(model_fn_for(SPEC, BATCH, weight_noise_std=0.01),
                          AlgorithmConfig(**options), clients_per_round=3)
  with execution_context(1):
    before, after, train = _train(process, client_data)
  assert np.isfinite(train["loss"]) and train["num_examples"] == 3 * 2 * BATCH
  assert max(float(np.max(np.abs(a - b))) for a, b in zip(before, after)) > 0


@pytest.mark.parametrize("algorithm", ["fedadam", "fedyogi", "fedavgm"])
def test_server_momentum_sets_the_adaptive_first_moment(algorithm):
  """Three server steps of one pseudo-gradient, then one of the opposite:
  without momentum the last step follows the last gradient (weights come
  back up); with the default momentum 0.9 the earlier ones still dominate."""

  def second_step(momentum: float) -> float:
    optimizer = build_server_optimizer(AlgorithmConfig(
        algorithm=algorithm, server_learning_rate=0.1,
        server_momentum=momentum))
    spec = tf.TensorSpec([1], tf.float32)
    state = optimizer.initialize(spec)
    weights = tf.zeros([1])
    for _ in range(3):
      state, weights = optimizer.next(state, weights, tf.ones([1]))
    first = float(weights[0])
    state, weights = optimizer.next(state, weights, -tf.ones([1]))
    assert first < 0
    return float(weights[0]) - first

  assert second_step(0) > 0  # An int works too.
  assert second_step(0.9) < 0
  assert AlgorithmConfig().server_momentum == 0.9  # TFF's beta_1 default.
  with pytest.raises(ValueError, match=r"server_momentum must be in \[0, 1\)"):
    AlgorithmConfig(algorithm=algorithm, server_momentum=1.0)


def test_client_data_views_agree(client_data):
  assert client_data.client_ids == ["c0", "c1", "c2", "c3"]
  direct = [e["waveform"].numpy() for e in
            client_data.create_tf_dataset_for_client("c2")]
  traced = [e["waveform"].numpy() for e in
            client_data.serializable_dataset_fn(tf.constant("c2"))]
  np.testing.assert_array_equal(direct, traced)
  batches = list(round_dataset(client_data.waveforms("c1"), BATCH, 4, seed=3))
  assert len(batches) == 4 and batches[0]["waveform"].shape == (BATCH,
                                                                 direct[0].size)
  again = list(round_dataset(client_data.waveforms("c1"), BATCH, 4, seed=3))
  np.testing.assert_array_equal(batches[3]["waveform"], again[3]["waveform"])


@pytest.mark.slow
def test_mimelite_keeps_the_adam_moments_on_the_server(client_data):
  """The base optimizer's state lives in the server state and moves once
  per round, from the clients' full-batch gradients."""
  process = build_process(model_fn_for(SPEC, BATCH), AlgorithmConfig(
      algorithm="mimelite", client_optimizer="adam",
      client_learning_rate=1e-3), clients_per_round=3)
  with execution_context(1):
    state = process.initialize()
    adam = state.client_work[0]
    assert int(adam["step"]) == 0
    assert all(not np.any(m) for m in adam["accumulator"])
    for r in range(2):
      state = process.next(state, _round_data(client_data, r)).state
  adam = state.client_work[0]
  assert int(adam["step"]) == 2
  assert all(np.any(m) for m in adam["accumulator"])
  assert all(np.any(v) for v in adam["preconditioner"])


def test_mimelite_needs_a_client_optimizer_with_state():
  with pytest.raises(ValueError, match="mimelite .* client_optimizer='adam'"):
    AlgorithmConfig(algorithm="mimelite")
  with pytest.raises(ValueError, match="not mimelite"):
    build_process(model_fn_for(SPEC, BATCH), AlgorithmConfig(
        algorithm="mimelite", client_optimizer="adam",
        dp_noise_multiplier=0.1), clients_per_round=3)


@pytest.mark.parametrize("argv,expected", [
    ([], ("fedavg", "sgd", 0.05)),
    (["--algorithm=mimelite"], ("mimelite", "adam", 1e-3)),
    (["--algorithm=fedadam", "--client_optimizer=adam"],
     ("fedadam", "adam", 1e-3)),
    (["--algorithm=mimelite", "--client_optimizer=sgd",
      "--client_learning_rate=0.2"], None),
    (["--algorithm=mimelite", "--client_learning_rate=0.01"],
     ("mimelite", "adam", 0.01)),
])
def test_launcher_defaults_follow_the_algorithm(argv, expected):
  """The client optimizer defaults per algorithm and its step size per
  optimizer; what is given is kept (and MimeLite with plain SGD refused)."""
  cli.parse(launcher.FLAGS, ["tff_sim", "--data_dir=d", "--run_dir=r",
                             *argv])
  if expected is None:
    with pytest.raises(ValueError, match="client_optimizer='adam'"):
      launcher.config_from_flags()
    return
  algorithm = launcher.config_from_flags().algorithm
  assert (algorithm.algorithm, algorithm.client_optimizer,
          algorithm.client_learning_rate) == expected


def test_cost_model_counts_encoder_flops_and_bytes():
  model = SSLModel(SPEC)
  costs = CostModel.for_model(model)
  params = sum(int(np.prod(w.shape)) for w in model.weights)
  patch = SPEC.frontend.patch_shape
  assert costs.flops_per_example == (2 * SPEC.encoder.forward_macs(patch) * 2
                                     * TRAIN_FLOPS_FACTOR)
  cost = costs.round_cost([4, 6], wall_s=1.5)
  assert cost.examples == 10 and cost.clients == 2
  assert cost.bytes_down == cost.bytes_up == 2 * 4 * params
  assert CostModel.for_model(model, compressed=True).update_bytes == params
  # MimeLite: a full-batch gradient pass per example before training,
  # Adam's two moments broadcast with the model, the gradient uploaded too.
  mime = CostModel.for_model(model, algorithm=AlgorithmConfig(
      algorithm="mimelite", client_optimizer="adam"))
  assert mime.flops_per_example == 2 * costs.flops_per_example
  assert mime.model_bytes == 3 * 4 * params
  assert mime.update_bytes == 2 * 4 * params
  momentum = CostModel.for_model(model, algorithm=AlgorithmConfig(
      algorithm="mimelite", client_momentum=0.9))
  assert momentum.model_bytes == 2 * 4 * params


def _sim_config(rounds, workers=1):
  return SimulationConfig(
      model=SPEC, partition=PartitionConfig(method="natural"), rounds=rounds,
      clients_per_round=3, batch_size=BATCH, max_local_steps=2, eval_every=2,
      num_workers=workers)


class _Captured(Exception):
  """Stops an entry point once it has cut its training segments."""

  def __init__(self, segments):
    super().__init__("captured")
    self.segments = segments


def test_train_main_and_simulation_cut_the_same_segments(corpus, tmp_path,
                                                        monkeypatch):
  """A centralized run from train_main sees the federated run's examples."""
  from model import cli  # pylint: disable=g-import-not-at-top
  from model import train as train_lib  # pylint: disable=g-import-not-at-top
  from model import train_main  # pylint: disable=g-import-not-at-top
  from tff_sim import simulation  # pylint: disable=g-import-not-at-top
  table, waveforms = corpus

  def central(spec, config, segments, run_dir, **kwargs):
    del config, run_dir, kwargs
    raise _Captured((spec, segments))

  monkeypatch.setattr(train_lib, "train_centralized", central)
  cli.parse(train_main.FLAGS, [
      "train_main", f"--data_dir={table.root}",
      f"--run_dir={tmp_path / 'central'}", "--task=audio2vec_cbow",
      "--encoder=tiny", "--noevaluate"])
  with pytest.raises(_Captured) as caught:
    train_main.main()
  spec, central_segments = caught.value.segments

  def federated(segments, clients):
    del clients
    raise _Captured(segments)

  monkeypatch.setattr(simulation, "SegmentClientData", federated)
  with pytest.raises(_Captured) as caught:
    run_simulation(SimulationConfig(model=spec, rounds=1, clients_per_round=1,
                                    batch_size=BATCH),
                   table, waveforms, str(tmp_path / "federated"))
  sim = caught.value.segments
  assert len(sim) and central_segments.shape == sim.waveforms.shape
  np.testing.assert_array_equal(central_segments, sim.waveforms)


@pytest.mark.slow
def test_resume_gives_identical_metrics_and_files(corpus, tmp_path):
  table, waveforms = corpus
  full = run_simulation(_sim_config(3), table, waveforms, str(tmp_path / "a"),
                        show_progress=False)
  run_simulation(_sim_config(2), table, waveforms, str(tmp_path / "b"),
                 show_progress=False)
  # Resumed on two workers: clients split across processes, same result.
  resumed = run_simulation(_sim_config(3, workers=2), table, waveforms,
                           str(tmp_path / "b"), show_progress=False)
  assert resumed.resumed_from == 2 and full.resumed_from == 0
  assert resumed.final_metrics == pytest.approx(full.final_metrics, abs=1e-6)
  assert resumed.totals["client_flops"] == full.totals["client_flops"]
  for name in ("partition.json", "partition.png", "metrics.csv", "eval.csv",
               "model/weights.npz"):
    assert os.path.exists(tmp_path / "b" / name), name
  with open(tmp_path / "b" / "metrics.csv") as f:
    assert [int(r["round"]) for r in csv.DictReader(f)] == [1, 2, 3]
  assert set(full.best) >= {"keyword", "speaker", "content"}
  # The best global model per metric: same rounds, values and weights after
  # a resume, and the round that scored best in eval.csv.
  assert resumed.best == pytest.approx(full.best)
  index = read_best_index(str(tmp_path / "b"))
  assert index == read_best_index(str(tmp_path / "a"))
  with open(tmp_path / "a" / "eval.csv") as f:
    evals = {int(r["round"]): r for r in csv.DictReader(f)}
  for metric, (round_num, value) in full.best.items():
    assert index[metric] == {"round": round_num, "value": pytest.approx(value)}
    assert value == max(float(r[metric]) for r in evals.values())
    assert float(evals[round_num][metric]) == pytest.approx(value)
    for run in ("a", "b"):
      with np.load(os.path.join(best_model_dir(str(tmp_path / run), metric),
                                "weights.npz")) as w:
        weights = dict(w)
      if run == "a":
        first = weights
    for name, value in first.items():
      np.testing.assert_allclose(weights[name], value, atol=1e-6)
  # A run that went further is not taken for a shorter one.
  with pytest.raises(RunConfigMismatch, match="rounds = 3, past the 2"):
    run_simulation(_sim_config(2), table, waveforms, str(tmp_path / "a"),
                   show_progress=False)


def _cli(run_dir, data_dir):
  return [sys.executable, "-m", "tff_sim", f"--data_dir={data_dir}",
          f"--run_dir={run_dir}", "--task=triplet", "--encoder=tiny",
          "--rounds=4", "--clients_per_round=3", "--batch_size=2",
          "--max_local_steps=2", "--eval_every=4"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_metrics(corpus, tmp_path):
  data_dir = corpus[0].root
  env = {**os.environ, "PYTHONPATH": os.getcwd()}
  subprocess.run(_cli(tmp_path / "a", data_dir), check=True, env=env,
                 capture_output=True)
  killed = subprocess.Popen(_cli(tmp_path / "b", data_dir), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  metrics = tmp_path / "b" / "metrics.csv"
  deadline = time.monotonic() + 300
  while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
    assert killed.poll() is None and time.monotonic() < deadline
    time.sleep(0.2)
  workers = [c.pid for c in psutil.Process(killed.pid).children(recursive=True)]
  assert workers  # The TFF worker process(es).
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  time.sleep(1.0)
  assert not any(psutil.pid_exists(p) and psutil.Process(p).status() !=
                 psutil.STATUS_ZOMBIE for p in workers)
  subprocess.run(_cli(tmp_path / "b", data_dir), check=True, env=env,
                 capture_output=True)
  def results(run_dir):  # Everything but wall times.
    with open(run_dir / "eval.csv") as f:
      return [{k: v for k, v in row.items() if "wall_s" not in k}
              for row in csv.DictReader(f)]
  assert results(tmp_path / "a") == results(tmp_path / "b")


@pytest.mark.slow
def test_resuming_a_run_whose_head_changed_names_the_weights(corpus,
                                                             tmp_path,
                                                             monkeypatch):
  """A federated run saved before a task's head changed (here: SimSiam's
  projector back to its earlier 2 layers, or one more weight) is refused
  with the weights named, not with an error from inside TFF."""
  table, waveforms = corpus
  spec = ModelSpec(task="simsiam", encoder=ENCODERS["tiny"])

  def config(rounds):
    return SimulationConfig(model=spec, rounds=rounds, clients_per_round=2,
                            batch_size=4, max_local_steps=1, eval_every=10)

  run_dir = str(tmp_path / "run")
  run_simulation(config(1), table, waveforms, run_dir, show_progress=False)
  current = simsiam.SimSiam.__init__

  def changed_head(layers):
    def init(self, task_config, encoder_config, frontend, *, seed=0):
      current(self, task_config, encoder_config, frontend, seed=seed)
      self.projector = StandardizedMLP(
          layers, standardize_hidden=False, standardize_output=True,
          output_bias=False, rng=self.rng, name="head/projector")
      self.weights = self.projector.weights + self.predictor.weights
      self.weight_names = (self.projector.weight_names
                           + self.predictor.weight_names)
    return init

  # Same number of weights, other shapes: TFF would load them silently.
  monkeypatch.setattr(simsiam.SimSiam, "__init__", changed_head((32, 128, 64)))
  with pytest.raises(WeightsMismatchError) as error:
    run_simulation(config(2), table, waveforms, run_dir, show_progress=False)
  assert str(error.value).startswith(
      os.path.join(run_dir, "state") + " (round 1): the saved state does not "
      "fit task 'simsiam' with encoder 'tiny'")
  assert ("'head/projector/dense0/bias': saved (128, 128), expected (128,)"
          in str(error.value))
  assert "simulate into a new run directory" in str(error.value)
  # One more weight: another structure.
  monkeypatch.setattr(simsiam.SimSiam, "__init__",
                      changed_head((32, 128, 128, 128, 64)))
  with pytest.raises(WeightsMismatchError, match="state: the saved federated "
                     "state does not have the structure this version builds "
                     "for task 'simsiam'"):
    run_simulation(config(2), table, waveforms, run_dir, show_progress=False)
  assert not [c for c in psutil.Process().children(recursive=True)
              if c.status() != psutil.STATUS_ZOMBIE]
