"""Unit tests of the export package's pieces: signature keys, optimizers,
waveform patches."""

import numpy as np
import pytest
import tensorflow as tf

from export.corpus import waveform_patches
from export.naming import signature_key, signature_keys
from export.optimizers import OptimizerConfig, make_optimizer
from model.features import FrontendConfig, frames_to_patches, log_mel


def test_signature_keys_are_identifiers():
  assert signature_key("encoder/block0/conv_1x3/kernel") == (
      "encoder__block0__conv_1x3__kernel")
  assert signature_key("optimizer/head/mlp/dense0/kernel/m") == (
      "optimizer__head__mlp__dense0__kernel__m")
  assert signature_key("0.weird-name") == "_0_weird_name"
  assert all(k.isidentifier() for k in signature_keys(["a/b", "a.c", "9"]))
  with pytest.raises(ValueError, match="both map"):
    signature_keys(["a/b", "a__b"])


@pytest.mark.parametrize("config, keras", [
    (OptimizerConfig("sgd", learning_rate=0.1, momentum=0.9),
     lambda: tf.keras.optimizers.SGD(0.1, momentum=0.9)),
    (OptimizerConfig("sgd", learning_rate=0.1, momentum=0.0),
     lambda: tf.keras.optimizers.SGD(0.1)),
    (OptimizerConfig("adam", learning_rate=0.01),
     lambda: tf.keras.optimizers.Adam(0.01)),
])
def test_optimizers_match_keras(config, keras):
  rng = np.random.default_rng(0)
  init = [rng.standard_normal((3, 4)).astype(np.float32),
          rng.standard_normal(5).astype(np.float32)]
  ours = [tf.Variable(v) for v in init]
  theirs = [tf.Variable(v) for v in init]
  optimizer = make_optimizer(config, ours, ["w", "b"])
  reference = keras()
  for _ in range(5):
    grads = [tf.constant(rng.standard_normal(v.shape), tf.float32)
             for v in init]
    optimizer.apply(grads)
    reference.apply_gradients(zip(grads, theirs))
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
  assert float(optimizer.step) == 5.0
  names = [name for name, _ in optimizer.state]
  assert names[0] == "optimizer/step"
  assert len(names) == 1 + 2 * len(optimizer.slot_names())


def test_optimizer_config_is_validated():
  with pytest.raises(ValueError, match="unknown optimizer"):
    OptimizerConfig("rmsprop")
  with pytest.raises(ValueError, match="learning_rate"):
    OptimizerConfig(learning_rate=0.0)
  assert OptimizerConfig("sgd").hyperparameters() == {
      "learning_rate": 1e-3, "momentum": 0.9}


@pytest.mark.parametrize("seconds", [0.3, 1.0, 2.5, 3.5])
def test_waveform_patches_give_the_clip_log_mel_patches(seconds):
  frontend = FrontendConfig()
  rng = np.random.default_rng(1)
  clip = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
  patches = waveform_patches(clip, frontend)
  want = frames_to_patches(log_mel(clip, frontend), frontend.patch_frames)
  assert patches.shape == (len(want), frontend.patch_samples)
  full = frontend.num_frames(len(clip)) // frontend.patch_frames
  got = log_mel(patches, frontend).numpy()
  np.testing.assert_allclose(got[:full], want[:full], atol=1e-4)
