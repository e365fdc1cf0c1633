"""TemporalGap (Tagliasacchi et al., 2020): predict the normalized time gap
between two slices of the same clip, with cross-entropy on a [0, 1] target.
"""

from __future__ import annotations

import tensorflow as tf

from model import ops
from model.encoders import Encoder, EncoderConfig
from model.features import FrontendConfig
from model.heads import MLPHead
from model.tasks.base import (SSLTask, TaskConfig, crop_frames,
                              random_offsets, static_batch)

__all__ = ["TemporalGap"]


class TemporalGap(SSLTask):
  """Two random slices; the head regresses ``|t1 - t2| / max_gap``.

  The head sees the order-free pair features ``(|e1 - e2|, e1 * e2)``: with
  the plain concatenation ``(e1, e2)`` the loss stayed at the constant
  predictor's on the built-in corpus (measured: 0.64 -> 0.64 in 1000 steps),
  with these it falls (0.642 -> 0.604) and the encoder beats random init on
  keyword, speaker and retrieval probes.
  """

  patches_per_example = 2

  def __init__(self, config: TaskConfig, encoder_config: EncoderConfig,
               frontend: FrontendConfig, *, seed: int = 0):
    super().__init__(config, encoder_config, frontend, seed=seed)
    self.mlp = MLPHead((2 * encoder_config.embedding_dim, config.hidden_dim, 1),
                       rng=self.rng, name="head/mlp")
    self.weights, self.weight_names = self.mlp.weights, self.mlp.weight_names

  @classmethod
  def frames_per_example(cls, config: TaskConfig, patch_frames: int) -> int:
    return patch_frames + config.max_gap_frames

  def loss(self, encoder: Encoder, features: tf.Tensor) -> tf.Tensor:
    batch = static_batch(features)
    first = random_offsets(batch, self.config.max_gap_frames)
    second = random_offsets(batch, self.config.max_gap_frames)
    slices = tf.concat(
        [crop_frames(features, first, self.patch_shape.frames),
         crop_frames(features, second, self.patch_shape.frames)], axis=0)
    e1, e2 = tf.split(encoder(slices), 2, axis=0)
    pair = tf.concat([tf.abs(e1 - e2), e1 * e2], axis=-1)
    logit = tf.reshape(self.mlp(pair), [batch])
    target = (tf.cast(tf.abs(first - second), tf.float32)
              / float(self.config.max_gap_frames))
    # Binary cross-entropy with a soft target, from logits.
    return tf.reduce_mean(ops.softplus(logit) - target * logit)
