"""Triplet-loss baseline (Jansen et al., "Unsupervised learning of semantic
audio representations", 2018): anchor and positive are nearby slices of one
clip, the negative a slice of another clip in the batch.
"""

from __future__ import annotations

import tensorflow as tf

from model import ops
from model.encoders import Encoder, EncoderConfig
from model.features import FrontendConfig
from model.tasks.base import (SSLTask, TaskConfig, crop_frames,
                              random_offsets, static_batch)

__all__ = ["Triplet"]


class Triplet(SSLTask):
  """Margin loss on squared distances of unit-norm embeddings (no head)."""

  patches_per_example = 2

  def __init__(self, config: TaskConfig, encoder_config: EncoderConfig,
               frontend: FrontendConfig, *, seed: int = 0):
    super().__init__(config, encoder_config, frontend, seed=seed)

  @classmethod
  def frames_per_example(cls, config: TaskConfig, patch_frames: int) -> int:
    return patch_frames + config.positive_span_frames

  def loss(self, encoder: Encoder, features: tf.Tensor) -> tf.Tensor:
    batch = static_batch(features)
    span, s = self.config.positive_span_frames, self.patch_shape.frames
    anchor_at = random_offsets(batch, span)
    positive_at = random_offsets(batch, span)
    slices = tf.concat([crop_frames(features, anchor_at, s),
                        crop_frames(features, positive_at, s)], axis=0)
    anchor, positive = tf.split(ops.l2_normalize(encoder(slices)), 2, axis=0)
    # Each example's negative is the next example's positive (another clip).
    # (Split + concat rather than slicing: StridedSliceGrad is not a builtin.)
    first, rest = tf.split(positive, [1, batch - 1], axis=0)
    negative = tf.concat([rest, first], axis=0)
    d_pos = tf.reduce_sum(tf.square(anchor - positive), axis=-1)
    d_neg = tf.reduce_sum(tf.square(anchor - negative), axis=-1)
    return tf.reduce_mean(ops.relu(d_pos - d_neg + self.config.margin))
