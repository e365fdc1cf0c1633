"""Audio2Vec CBoW and skip-gram (Tagliasacchi et al., "Pre-training audio
representations with self-supervision", 2020).

An example is ``2N + 1`` consecutive slices. CBoW reconstructs the middle
slice's log-mel from the embeddings of the ``N`` past and ``N`` future slices;
skip-gram reconstructs the ``2N`` surrounding slices from the middle slice's
embedding. Both use a conv decoder and mean squared error.
"""

from __future__ import annotations

import tensorflow as tf

from model.encoders import Encoder, EncoderConfig
from model.features import FrontendConfig
from model.heads import SliceDecoder
from model.tasks.base import SSLTask, TaskConfig

__all__ = ["Audio2VecCBoW", "Audio2VecSkipGram"]


def _decoder_channels(encoder_config: EncoderConfig) -> tuple[int, int, int]:
  channels = encoder_config.channels
  return channels[2], channels[1], channels[0]


class _Audio2Vec(SSLTask):
  """Shared slicing of an example into ``2N + 1`` slices."""

  @classmethod
  def frames_per_example(cls, config: TaskConfig, patch_frames: int) -> int:
    return (2 * config.num_neighbors + 1) * patch_frames

  def _slices(self, features: tf.Tensor) -> tf.Tensor:
    """``[b, (2N+1)*s, bins]`` -> ``[b, 2N+1, s, bins]``."""
    bins = features.shape[-1]
    return tf.reshape(features, [-1, 2 * self.config.num_neighbors + 1,
                                 self.patch_shape.frames, bins])


class Audio2VecCBoW(_Audio2Vec):
  """Reconstruct the middle slice from its ``2N`` neighbours."""

  @property
  def patches_per_example(self) -> int:
    return 2 * self.config.num_neighbors

  def __init__(self, config: TaskConfig, encoder_config: EncoderConfig,
               frontend: FrontendConfig, *, seed: int = 0):
    super().__init__(config, encoder_config, frontend, seed=seed)
    n = config.num_neighbors
    self.decoder = SliceDecoder(
        2 * n * encoder_config.embedding_dim, *frontend.patch_shape, 1,
        _decoder_channels(encoder_config),
        rng=self.rng, name="head/decoder")
    self.weights, self.weight_names = self.decoder.weights, self.decoder.weight_names

  def loss(self, encoder: Encoder, features: tf.Tensor) -> tf.Tensor:
    n, s = self.config.num_neighbors, self.patch_shape.frames
    slices = self._slices(features)
    bins = slices.shape[-1]
    context = tf.concat([slices[:, :n], slices[:, n + 1:]], axis=1)
    embeddings = encoder(tf.reshape(context, [-1, s, bins]))
    embeddings = tf.reshape(embeddings, [-1, 2 * n * embeddings.shape[-1]])
    reconstruction = tf.squeeze(self.decoder(embeddings), axis=-1)
    return tf.reduce_mean(tf.square(reconstruction - slices[:, n]))


class Audio2VecSkipGram(_Audio2Vec):
  """Reconstruct the ``2N`` neighbours from the middle slice."""

  patches_per_example = 1

  def __init__(self, config: TaskConfig, encoder_config: EncoderConfig,
               frontend: FrontendConfig, *, seed: int = 0):
    super().__init__(config, encoder_config, frontend, seed=seed)
    self.decoder = SliceDecoder(
        encoder_config.embedding_dim, *frontend.patch_shape,
        2 * config.num_neighbors,
        _decoder_channels(encoder_config), rng=self.rng, name="head/decoder")
    self.weights, self.weight_names = self.decoder.weights, self.decoder.weight_names

  def loss(self, encoder: Encoder, features: tf.Tensor) -> tf.Tensor:
    n = self.config.num_neighbors
    slices = self._slices(features)
    reconstruction = self.decoder(encoder(slices[:, n]))  # [b, s, bins, 2N]
    targets = tf.concat([slices[:, :n], slices[:, n + 1:]], axis=1)
    targets = tf.transpose(targets, [0, 2, 3, 1])
    return tf.reduce_mean(tf.square(reconstruction - targets))
