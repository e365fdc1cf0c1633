"""Seeded (stateless) task randomness and weight noise."""

import numpy as np
import tensorflow as tf

from model import randomness
from model.encoders import ENCODERS
from model.modules import weight_noise
from model.ssl_model import ModelSpec, SSLModel


def _draws(seed):
  with randomness.stateless_seed(tf.constant(seed)):
    return randomness.uniform([5]).numpy(), randomness.normal([5]).numpy()


def test_stateless_draws_are_a_function_of_the_seed():
  a, b = _draws([1, 2]), _draws([1, 2])
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.allclose(a[0], _draws([1, 3])[0])
  assert not np.allclose(a[0], a[1])  # Two draws under one seed differ.


def test_task_loss_is_deterministic_under_a_seed():
  model = SSLModel(ModelSpec(task="nt_xent", encoder=ENCODERS["tiny"]))
  x = tf.random.stateless_normal([4, model.example_samples], [0, 0]) * 0.1
  losses = []
  for seed in ([7, 0], [7, 0], [7, 1]):
    with randomness.stateless_seed(tf.constant(seed)):
      losses.append(float(model.loss(x)))
  assert losses[0] == losses[1] != losses[2]


def test_weight_noise_perturbs_forward_and_keeps_gradients():
  model = SSLModel(ModelSpec(task="audio2vec_cbow", encoder=ENCODERS["tiny"]))
  x = tf.random.stateless_normal([2, model.example_samples], [0, 1]) * 0.1
  clean = float(model.loss(x))
  with tf.GradientTape() as tape, weight_noise(0.05):
    noisy = model.loss(x)
  grads = tape.gradient(noisy, model.weights)
  assert float(noisy) != clean
  assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
  assert float(model.loss(x)) == clean  # Weights themselves are unchanged.
