"""Encoder pooling options: statistics pooling's builtin gradient, sizes,
builtin-only training steps, and the non-learned log-mel baseline."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tflite_runtime.interpreter as tflite

from model import evaluation, ops
from model.encoders import ENCODERS, POOLINGS, Encoder, EncoderConfig
from model.features import FrontendConfig
from model.gradcheck import max_relative_error
from model.ssl_model import ModelSpec, SSLModel
from model.tflite_compat import convert, select_tf_ops, sgd_train_module


def _gradient(fn, x, upstream):
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x)
  return y, tape.gradient(y, x, output_gradients=upstream)


@pytest.mark.parametrize("builtin", ["custom", "delegate"])
def test_statistics_pool_matches_numpy_and_tf_gradient(builtin):
  rng = np.random.default_rng(0)
  x = tf.constant(rng.standard_normal((3, 6, 4, 5)), tf.float32)
  upstream = tf.constant(rng.standard_normal((3, 10)), tf.float32)
  with ops.formulation(builtin):
    y, ours = _gradient(ops.statistics_pool, x, upstream)
  with ops.tf_gradients():
    y_tf, theirs = _gradient(ops.statistics_pool, x, upstream)
  flat = x.numpy().reshape(3, 24, 5)
  np.testing.assert_allclose(y[:, :5], flat.mean(axis=1), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(y[:, 5:], np.sqrt(flat.var(axis=1) + 1e-5),
                             rtol=1e-5)
  np.testing.assert_allclose(y, y_tf, rtol=1e-6)
  assert max_relative_error(ours, theirs) <= 1e-5


@pytest.mark.parametrize("pooling", sorted(POOLINGS))
def test_pooled_size_and_params(pooling):
  config = dataclasses.replace(ENCODERS["small"], pooling=pooling)
  assert config.pooled_dim == 64 * POOLINGS[pooling]
  extra = (config.pooled_dim - 64) * config.embedding_dim
  assert config.num_params == ENCODERS["small"].num_params + extra
  patches = tf.random.normal([2, 96, 64])
  assert Encoder(config)(patches).shape == (2, 128)


def test_unknown_pooling_is_named():
  with pytest.raises(ValueError, match=r"unknown pooling 'avg'.*'max_stats'"):
    EncoderConfig(pooling="avg")


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["stats", "max_stats"])
def test_train_step_with_pooling_is_builtin_and_tracks_tf(pooling):
  spec = ModelSpec(task="audio2vec_cbow", encoder=dataclasses.replace(
      ENCODERS["tiny"], pooling=pooling))
  model = SSLModel(spec)
  tflite_model = convert(sgd_train_module(model, 2, 0.05), ["train"])
  assert not select_tf_ops(tflite_model)
  interpreter = tflite.Interpreter(model_content=tflite_model)
  interpreter.allocate_tensors()
  train = interpreter.get_signature_runner("train")
  reference = sgd_train_module(SSLModel(spec), 2, 0.05)
  rng = np.random.default_rng(1)
  x = (0.3 * rng.standard_normal((2, model.example_samples))).astype(
      np.float32)
  ours = [float(train(waveform=x)["loss"]) for _ in range(5)]
  theirs = [float(reference.train(tf.constant(x))["loss"]) for _ in range(5)]
  np.testing.assert_allclose(ours, theirs, rtol=1e-4)
  assert ours[-1] < ours[0]


def test_logmel_baseline_features():
  frontend = FrontendConfig()
  rng = np.random.default_rng(0)
  quiet = 0.01 * rng.standard_normal(16000).astype(np.float32)
  loud = 0.5 * rng.standard_normal(24000).astype(np.float32)
  features = evaluation.logmel_statistics([quiet, loud], frontend)
  assert features.shape == (2, 2 * frontend.num_mel_bins)
  assert np.all(features[1, :64] > features[0, :64])  # Louder: higher mean.
  assert np.all(features[:, 64:] >= 0)
  with pytest.raises(ValueError, match="waveform 0 must be 1-D"):
    evaluation.logmel_statistics([np.zeros((2, 100))], frontend)
