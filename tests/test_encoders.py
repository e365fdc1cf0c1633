"""Encoder presets: pinned sizes and costs, shapes, input validation."""

import numpy as np
import pytest
import tensorflow as tf

from model.encoders import ENCODERS, Encoder, EncoderConfig
from model.features import FrontendConfig
from model.ssl_model import ModelSpec

PATCH = FrontendConfig().patch_shape  # The default front-end's 96x64.

# (parameters, forward FLOPs per 96x64 patch) of each preset.
PINNED = {
    "tiny": (7_284, 3_098_624),
    "small": (32_968, 11_517_952),
    "medium": (114_576, 44_269_568),
    "large": (424_096, 173_473_792),
}


@pytest.mark.parametrize("preset", sorted(PINNED))
def test_pinned_size_and_flops(preset):
  config = ENCODERS[preset]
  params, flops = PINNED[preset]
  assert config.num_params == params
  assert 2 * config.forward_macs(PATCH) == flops
  encoder = Encoder(config)
  assert sum(int(np.prod(v.shape)) for v in encoder.weights) == params
  assert len(set(encoder.weight_names)) == len(encoder.weights)


def test_large_is_four_times_small_width():
  assert ENCODERS["large"].channels == tuple(4 * c for c in
                                             ENCODERS["small"].channels)


def test_flops_match_tf_profiler():
  config = ENCODERS["tiny"]
  encoder = Encoder(config)
  fn = tf.function(encoder).get_concrete_function(
      tf.TensorSpec([1, 96, 64], tf.float32))
  from tensorflow.python.profiler import model_analyzer, option_builder
  stats = model_analyzer.profile(
      fn.graph, options=option_builder.ProfileOptionBuilder.float_operation())
  # The profiler counts conv/matmul multiply-adds (plus bias adds etc.).
  assert abs(stats.total_float_ops - 2 * config.forward_macs(PATCH)) / (
      2 * config.forward_macs(PATCH)) < 0.10


def test_forward_shape_and_determinism():
  config = ENCODERS["tiny"]
  x = tf.random.normal([3, 96, 64])
  a, b = Encoder(config, seed=1), Encoder(config, seed=1)
  np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
  assert a(x).shape == (3, config.embedding_dim)
  assert not np.allclose(a(x).numpy(), Encoder(config, seed=2)(x).numpy())


def test_bad_input_shape_names_expected():
  # The weights fit any patch shape the pools divide; 90 frames is not one.
  with pytest.raises(ValueError, match=r"divisible by 8; got .*\[2, 90, 64\]"):
    Encoder(ENCODERS["tiny"])(tf.zeros([2, 90, 64]))
  with pytest.raises(ValueError, match=r"\[n, frames, bins\]"):
    Encoder(ENCODERS["tiny"])(tf.zeros([2, 96]))


def test_config_validation():
  # The front-end owns the patch shape; a spec whose encoder cannot take it
  # is refused.
  with pytest.raises(ValueError, match="divisible"):
    ModelSpec(encoder=ENCODERS["small"],
              frontend=FrontendConfig(patch_frames=100))
  with pytest.raises(ValueError, match="divisible"):
    ENCODERS["tiny"].forward_macs((96, 60))
  with pytest.raises(ValueError, match="pooling"):
    EncoderConfig(pooling="avg")


def test_flops_follow_the_front_end_patch_shape():
  config = ENCODERS["tiny"]
  # Every conv layer's cost scales with the map's area; the dense layer not.
  dense = config.pooled_dim * config.embedding_dim
  full = config.forward_macs((96, 64)) - dense
  assert config.forward_macs((48, 32)) - dense == full // 4
