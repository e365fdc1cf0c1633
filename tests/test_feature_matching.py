"""Barlow Twins and SimSiam: losses against NumPy references, the collapse
cases, stop-gradient, batch-size limits and a few training steps."""

import numpy as np
import pytest
import tensorflow as tf

from export.exporter import ExportConfig, export_model, fresh_source
from model import ops
from model import randomness
from model.encoders import ENCODERS
from model.ssl_model import ModelSpec, SSLModel
from model.tasks import FEATURE_MATCHING_TASKS, SSL_TASKS, TaskConfig
from model.tasks.barlow_twins import barlow_twins_loss
from model.tasks.simsiam import frozen, negative_cosine, simsiam_loss
from model.train import TrainConfig, train_centralized
from tff_sim.simulation import SimulationConfig

EPS = 1e-5


def _standardize(z):
  return (z - z.mean(0)) / np.sqrt(z.var(0) + EPS)


def _barlow_reference(z1, z2, lam):
  c = _standardize(z1).T @ _standardize(z2) / len(z1)
  on = np.sum((1 - np.diag(c)) ** 2)
  off = np.sum(c ** 2) - np.sum(np.diag(c) ** 2)
  return (on + lam * off) / z1.shape[1]


def _unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_batch_standardize_matches_numpy():
  x = np.random.default_rng(0).normal(2.0, 3.0, (6, 5)).astype(np.float32)
  np.testing.assert_allclose(ops.batch_standardize(tf.constant(x)),
                             _standardize(x), atol=1e-5)
  # A batch-constant column maps to zeros, with a zero gradient.
  constant = tf.constant(np.ones((4, 3), np.float32))
  with tf.GradientTape() as tape:
    tape.watch(constant)
    y = ops.batch_standardize(constant)
  np.testing.assert_array_equal(y, 0.0)
  np.testing.assert_array_equal(tape.gradient(y, constant), 0.0)


@pytest.mark.parametrize("lam", [0.0, 1.0 / 64, 0.5])
def test_barlow_twins_loss_matches_numpy(lam):
  rng = np.random.default_rng(1)
  z1 = rng.normal(size=(8, 6)).astype(np.float32)
  z2 = (z1 + 0.5 * rng.normal(size=(8, 6))).astype(np.float32)
  np.testing.assert_allclose(float(barlow_twins_loss(z1, z2, lam)),
                             _barlow_reference(z1, z2, lam), rtol=1e-5)


def test_barlow_twins_collapse_and_optimum():
  collapsed = np.tile(np.arange(4, dtype=np.float32), (8, 1))  # Batch-constant.
  assert float(barlow_twins_loss(collapsed, collapsed, 0.1)) == pytest.approx(
      1.0)
  # Identical views with zero-mean orthogonal columns: C = I, loss 0.
  centered = np.random.default_rng(2).normal(size=(9, 4))
  centered -= centered.mean(0)
  q = np.linalg.qr(centered)[0].astype(np.float32)
  assert float(barlow_twins_loss(q, q, 0.1)) == pytest.approx(0.0, abs=1e-4)
  # Redundant (equal) dimensions are penalized by the off-diagonal term only.
  redundant = np.repeat(q[:, :1], 4, axis=1)
  assert float(barlow_twins_loss(redundant, redundant, 0.0)) == pytest.approx(
      0.0, abs=1e-4)
  assert float(barlow_twins_loss(redundant, redundant, 0.1)) == pytest.approx(
      0.1 * 12 / 4, rel=1e-3)


def test_simsiam_loss_matches_numpy_and_stops_gradient():
  rng = np.random.default_rng(3)
  p1, p2, z1, z2 = (tf.constant(rng.normal(size=(5, 7)), tf.float32)
                    for _ in range(4))
  want = -0.5 * (np.mean(np.sum(_unit(p1.numpy()) * _unit(z2.numpy()), 1))
                 + np.mean(np.sum(_unit(p2.numpy()) * _unit(z1.numpy()), 1)))
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([p1, z2])
    loss = simsiam_loss(p1, p2, z1, z2)
  assert float(loss) == pytest.approx(want, rel=1e-5)
  assert tape.gradient(loss, z2) is None  # Stop-gradient on the target side.
  assert np.abs(tape.gradient(loss, p1)).max() > 0
  # The collapsed solution (prediction = target) is the minimum, -1.
  assert float(negative_cosine(z1, z1)) == pytest.approx(-1.0, abs=1e-6)


def test_frozen_has_an_exactly_zero_gradient():
  x = tf.Variable([1.5, -2.0])
  with tf.GradientTape() as tape:
    y = frozen(x)
    loss = tf.reduce_sum(3.0 * y * y)
  np.testing.assert_array_equal(y, x.numpy())
  gradient = tape.gradient(loss, x)
  assert gradient is not None
  np.testing.assert_array_equal(gradient, 0.0)


def test_registry_and_families():
  assert set(FEATURE_MATCHING_TASKS) <= set(SSL_TASKS)
  assert SSL_TASKS["nt_xent"].min_batch_size == 2
  # A batch-standardized layer passes no gradient at batch 2.
  for task in ("barlow_twins", "simsiam"):
    assert SSL_TASKS[task].min_batch_size == 4


@pytest.mark.parametrize("task, small", [("barlow_twins", 2), ("simsiam", 3)])
def test_batch_size_below_minimum_is_rejected_where_it_is_set(task, small,
                                                              tmp_path):
  spec = ModelSpec(task=task, encoder=ENCODERS["tiny"])
  limit = f">= {SSL_TASKS[task].min_batch_size}"
  with pytest.raises(ValueError, match=rf"SimulationConfig\.batch_size is "
                     rf"{small}.*{limit}"):
    SimulationConfig(model=spec, batch_size=small)
  model = SSLModel(spec)
  with pytest.raises(ValueError, match=rf"TrainConfig\.batch_size is {small}"
                     rf".*{limit}"):
    train_centralized(spec, TrainConfig(batch_size=small),
                      np.zeros((4, model.example_samples), np.float32),
                      str(tmp_path / "run"))
  with pytest.raises(ValueError, match=rf"ExportConfig\.batch_size is "
                     rf"{small}.*{limit}"):
    export_model(fresh_source("tiny", task), str(tmp_path / "export"),
                 ExportConfig(batch_size=small), corpus=None)
  assert not (tmp_path / "export").exists()
  with pytest.raises(ValueError, match=f"static batch size is {small}"):
    model.loss(tf.zeros([small, model.example_samples]))
  with pytest.raises(ValueError, match="barlow_lambda"):
    TaskConfig(barlow_lambda=-1.0)


@pytest.mark.parametrize("task", [
    "barlow_twins", pytest.param("simsiam", marks=pytest.mark.slow)])
def test_a_few_steps_lower_the_loss(task):
  model = SSLModel(ModelSpec(task=task, encoder=ENCODERS["tiny"]))
  rng = np.random.default_rng(0)
  t = np.arange(model.example_samples) / 16000.0
  x = tf.constant((0.3 * np.sin(2 * np.pi * rng.uniform(150, 2000, (8, 1)) * t)
                   + 0.05 * rng.standard_normal((8, t.size))), tf.float32)
  optimizer = tf.keras.optimizers.Adam(3e-3)

  @tf.function
  def step():
    # The same views every step: the loss must fall on them.
    with tf.GradientTape() as tape, randomness.stateless_seed(
        tf.constant([5, 0], tf.int64)):
      loss = model.loss(x)
    grads = tape.gradient(loss, model.weights)
    optimizer.apply_gradients(zip(grads, model.weights))
    return loss

  with tf.GradientTape() as tape, randomness.stateless_seed(
      tf.constant([5, 0], tf.int64)):
    loss = model.loss(x)
  grads = tape.gradient(loss, model.weights)
  assert not any(g is None for g in grads)
  # Every weight gets a nonzero gradient, except, for SimSiam, the encoder's
  # output bias: its projector standardizes the first layer, and the task
  # reads that bias frozen (exactly zero, not rounding noise).
  dead = [name for name, g in zip(model.weight_names, grads)
          if not np.any(g.numpy())]
  assert dead == (["encoder/embedding/bias"] if task == "simsiam" else [])
  losses = [float(step()) for _ in range(12)]
  assert np.all(np.isfinite(losses))
  assert losses[-1] < losses[0] - 0.02, losses
