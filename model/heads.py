"""Task heads: an MLP and a conv decoder that reconstructs log-mel slices."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from model import ops
from model.encoders import glorot_uniform
from model.modules import WeightModule

__all__ = ["MLPHead", "StandardizedMLP", "SliceDecoder"]


class MLPHead(WeightModule):
  """Dense layers with ReLU between them (none after the last)."""

  def __init__(self, dims: Sequence[int], *, rng: np.random.Generator,
               name: str):
    super().__init__(name=name)
    self.dims = tuple(dims)
    for i, (din, dout) in enumerate(zip(self.dims[:-1], self.dims[1:])):
      self.add_weight(f"dense{i}/kernel", glorot_uniform((din, dout), rng))
      self.add_weight(f"dense{i}/bias", np.zeros(dout, np.float32))

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    w = self.params()
    num_layers = len(w) // 2
    for i in range(num_layers):
      with tf.name_scope(f"dense{i}"):
        x = ops.dense(x, w[2 * i], w[2 * i + 1])
        if i < num_layers - 1:
          x = ops.relu(x)
    return x


class StandardizedMLP(WeightModule):
  """Dense layers with ReLU between them and optional batch standardization
  (training-mode batch norm without scale, shift or running statistics,
  :func:`model.ops.batch_standardize`), as in the Barlow Twins and SimSiam
  heads.

  A layer followed by a standardization has no bias: the standardization
  removes every per-dimension constant, so the bias would get exactly zero
  gradient. For the same reason, when a head fed by the encoder standardizes
  its first layer's output, the encoder's own output bias gets no gradient
  from the task (zero analytically, rounding noise numerically; see
  :class:`model.tasks.simsiam.SimSiam`, which reads it frozen).
  """

  def __init__(self, dims: Sequence[int], *, standardize_hidden: bool,
               standardize_output: bool, output_bias: bool,
               rng: np.random.Generator, name: str):
    """Creates the weights.

    Args:
      dims: Input width, hidden widths, output width.
      standardize_hidden: Standardize hidden layers (before their ReLU).
      standardize_output: Standardize the output.
      output_bias: Give the last layer a bias (never with
        ``standardize_output``).
      rng: Initializer randomness.
      name: Weight-name prefix.
    """
    super().__init__(name=name)
    self.dims = tuple(dims)
    num_layers = len(self.dims) - 1
    self.standardized = [standardize_hidden] * (num_layers - 1) + [
        standardize_output]
    self.has_bias = [not standardized for standardized in self.standardized]
    self.has_bias[-1] = output_bias and not standardize_output
    for i, (din, dout) in enumerate(zip(self.dims[:-1], self.dims[1:])):
      self.add_weight(f"dense{i}/kernel", glorot_uniform((din, dout), rng))
      if self.has_bias[i]:
        self.add_weight(f"dense{i}/bias", np.zeros(dout, np.float32))

  def __call__(self, x: tf.Tensor) -> tf.Tensor:
    w = iter(self.params())
    last = len(self.has_bias) - 1
    for i, (has_bias, standardized) in enumerate(zip(self.has_bias,
                                                     self.standardized)):
      x = tf.matmul(x, next(w))
      if has_bias:
        x = x + next(w)
      if standardized:
        x = ops.batch_standardize(x)
      if i < last:
        x = ops.relu(x)
    return x


class SliceDecoder(WeightModule):
  """Embedding -> ``[b, frames, bins, out_channels]`` log-mel reconstruction.

  A dense layer to a map at 1/8 resolution, then three (x2 nearest upsample,
  3x3 conv) stages, ReLU between them; the mirror image of the encoder's
  pooling pyramid, as in Audio2Vec.
  """

  def __init__(self, input_dim: int, frames: int, bins: int,
               out_channels: int, channels: Sequence[int], *,
               rng: np.random.Generator, name: str = "decoder"):
    super().__init__(name=name)
    if frames % 8 or bins % 8:
      raise ValueError(f"SliceDecoder: frames ({frames}) and bins ({bins}) "
                       f"must be divisible by 8")
    if len(channels) != 3:
      raise ValueError(f"SliceDecoder: need 3 channel counts, got {channels}")
    self.grid = (frames // 8, bins // 8, int(channels[0]))
    self.add_weight("project/kernel",
                    glorot_uniform((input_dim, int(np.prod(self.grid))), rng))
    self.add_weight("project/bias", np.zeros(int(np.prod(self.grid)), np.float32))
    stage_channels = list(channels[1:]) + [out_channels]
    cin = channels[0]
    for i, cout in enumerate(stage_channels):
      self.add_weight(f"conv{i}/kernel", glorot_uniform((3, 3, cin, cout), rng))
      self.add_weight(f"conv{i}/bias", np.zeros(cout, np.float32))
      cin = cout

  def __call__(self, embedding: tf.Tensor) -> tf.Tensor:
    w = self.params()
    with tf.name_scope("decoder_project"):
      x = ops.relu(ops.dense(embedding, w[0], w[1]))
      x = tf.reshape(x, [-1, *self.grid])
    num_stages = (len(w) - 2) // 2
    for i in range(num_stages):
      with tf.name_scope(f"decoder_stage{i}"):
        x = ops.upsample2x(x)
        x = ops.conv2d(x, w[2 + 2 * i], w[3 + 2 * i])
        if i < num_stages - 1:
          x = ops.relu(x)
    return x
