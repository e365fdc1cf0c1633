"""NT-Xent contrastive learning (Chen et al., SimCLR, 2020; for audio: Saeed
et al., COLA, 2021): two augmented views of a clip are pulled together and
pushed away from the other clips' views in the batch.
"""

from __future__ import annotations

import abc

import math

import numpy as np
import tensorflow as tf

from model import ops
from model import randomness
from model.datasets.images import augment_images
from model.encoders import Encoder, EncoderConfig
from model.features import FrontendConfig
from model.heads import MLPHead
from model.tasks.base import (SSLTask, TaskConfig, check_batch_size,
                              crop_frames, random_offsets, static_batch)

__all__ = ["NTXent", "TwoViewTask", "augment"]


def _band_mask(size: int, max_width: int, batch: int) -> tf.Tensor:
  """float32 ``[batch, size]``: 0 on one random band of width < max_width."""
  width = random_offsets(batch, max_width)
  start = random_offsets(batch, size - 1)
  position = tf.range(size)[tf.newaxis, :]
  inside = tf.logical_and(position >= start[:, tf.newaxis],
                          position < (start + width)[:, tf.newaxis])
  return 1.0 - tf.cast(inside, tf.float32)


def augment(views: tf.Tensor, config: TaskConfig) -> tf.Tensor:
  """Random gain, additive noise and SpecAugment masks on log-mel views.

  Args:
    views: ``[batch, frames, bins]`` log-mel.
    config: Supplies ``gain_db``, ``noise_std``, ``max_mask_bins``,
      ``max_mask_frames``.

  Returns:
    Augmented views of the same shape; masked cells take the view's mean.
  """
  batch, frames, bins = views.shape
  gain = randomness.uniform([batch, 1, 1], -1.0, 1.0) * (
      config.gain_db * math.log(10.0) / 20.0)
  noisy = views + gain + randomness.normal(views.shape, config.noise_std)
  keep = (_band_mask(bins, config.max_mask_bins, batch)[:, tf.newaxis, :]
          * _band_mask(frames, config.max_mask_frames, batch)[:, :, tf.newaxis])
  fill = tf.reduce_mean(noisy, axis=[1, 2], keepdims=True)
  return keep * noisy + (1.0 - keep) * fill


class TwoViewTask(SSLTask):
  """Base of the feature-matching tasks: two augmented views of each example.

  An example is ``patch_frames + max_shift_frames`` frames; each view is a
  randomly shifted one-patch crop with :func:`augment` applied.
  Subclasses implement :meth:`views_loss` on ``[2B, ...]`` views (the first
  views of the batch, then the second views).

  Every feature-matching task also accepts images (FSSUAVL): two
  :func:`model.datasets.images.augment_images` views of each image go
  through the same encoder, head and :meth:`views_loss`.
  """

  patches_per_example = 2
  accepts_images = True
  #: Smallest batch the loss is meaningful for (contrast or batch statistics
  #: need at least two examples).
  min_batch_size = 2

  @classmethod
  def frames_per_example(cls, config: TaskConfig, patch_frames: int) -> int:
    return patch_frames + config.max_shift_frames

  def views(self, features: tf.Tensor) -> tf.Tensor:
    """``[B, example_frames, bins]`` -> ``[2B, patch_frames, bins]``: the
    first views of the batch, then the second views."""
    batch = static_batch(features)
    check_batch_size(type(self), batch, "the features' static batch size")
    s, shift = self.patch_shape.frames, self.config.max_shift_frames
    return tf.concat(
        [augment(crop_frames(features, random_offsets(batch, shift), s),
                 self.config),
         augment(crop_frames(features, random_offsets(batch, shift), s),
                 self.config)], axis=0)

  def image_views(self, images: tf.Tensor) -> tf.Tensor:
    check_batch_size(type(self), static_batch(images),
                     "the images' static batch size")
    c = self.config
    kwargs = dict(max_shift=c.image_max_shift, scale=c.image_scale,
                  brightness=c.image_brightness, noise_std=c.image_noise_std)
    return tf.concat([augment_images(images, **kwargs),
                      augment_images(images, **kwargs)], axis=0)

  def loss(self, encoder: Encoder, features: tf.Tensor) -> tf.Tensor:
    return self.views_loss(encoder, self.views(features))

  @abc.abstractmethod
  def views_loss(self, encoder: Encoder, views: tf.Tensor) -> tf.Tensor:
    """The loss of ``[2B, ...]`` views; view ``i``'s positive is ``i + B``."""


class NTXent(TwoViewTask):
  """SimCLR loss over ``2B`` views with a 2-layer projection head.

  With batch 1 the only other view is the positive and the loss is 0: the
  batch size must be at least 2 (more gives more negatives).
  """

  def __init__(self, config: TaskConfig, encoder_config: EncoderConfig,
               frontend: FrontendConfig, *, seed: int = 0):
    super().__init__(config, encoder_config, frontend, seed=seed)
    self.projection = MLPHead(
        (encoder_config.embedding_dim, config.hidden_dim, config.projection_dim),
        rng=self.rng, name="head/projection")
    self.weights = self.projection.weights
    self.weight_names = self.projection.weight_names

  def views_loss(self, encoder: Encoder, views: tf.Tensor) -> tf.Tensor:
    n = static_batch(views)
    batch = n // 2
    z = ops.l2_normalize(self.projection(encoder(views)))
    logits = tf.matmul(z, z, transpose_b=True) / self.config.temperature
    # Exclude self-similarity; the positive of view i is view (i + B) mod 2B.
    logits = logits - tf.constant(1e9 * np.eye(n, dtype=np.float32))
    positives = np.roll(np.eye(n, dtype=np.float32), batch, axis=1)
    log_prob = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
    return -tf.reduce_mean(tf.reduce_sum(log_prob * positives, axis=1))
