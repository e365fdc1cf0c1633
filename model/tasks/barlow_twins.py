"""Barlow Twins (Zbontar et al., "Barlow Twins: Self-Supervised Learning via
Redundancy Reduction", ICML 2021): the cross-correlation matrix of two views'
projections, standardized over the batch, is pushed towards the identity.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from model import ops
from model.encoders import Encoder, EncoderConfig
from model.features import FrontendConfig
from model.heads import StandardizedMLP
from model.tasks.base import TaskConfig
from model.tasks.nt_xent import TwoViewTask

__all__ = ["BarlowTwins", "barlow_twins_loss"]


def barlow_twins_loss(z1: tf.Tensor, z2: tf.Tensor,
                      off_diagonal_weight: float) -> tf.Tensor:
  """Redundancy-reduction loss of two ``[batch, dim]`` projections.

  Each column is standardized over the batch (:func:`model.ops.
  batch_standardize`), ``C = z1n^T z2n / batch`` is the cross-correlation,
  and the loss is ``(sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2) /
  dim``. Dividing by ``dim`` (the reference does not) keeps the loss O(1)
  whatever the projector size, so that client SGD learning rates carry over
  from the other tasks. Collapsed (batch-constant) projections give 1.

  Args:
    z1: ``[batch, dim]`` projections of the first views.
    z2: ``[batch, dim]`` projections of the second views.
    off_diagonal_weight: ``lambda``.

  Returns:
    A float32 scalar.
  """
  batch, dim = z1.shape
  c = tf.matmul(ops.batch_standardize(z1), ops.batch_standardize(z2),
                transpose_a=True) / float(batch)
  eye = np.eye(dim, dtype=np.float32)
  # Diagonal target 1 (invariance), off-diagonal target 0 (redundancy), as
  # constant masks: no diag-part ops in the gradient.
  weights = tf.constant(eye + off_diagonal_weight * (1.0 - eye))
  return tf.reduce_sum(weights * tf.square(c - eye)) / float(dim)


class BarlowTwins(TwoViewTask):
  """Barlow Twins on two augmented views.

  Projector: ``embedding -> hidden_dim -> ReLU -> projection_dim``. The
  paper's batch norm on the hidden layer is left out: it would leave the
  encoder's output bias without gradient (see
  :class:`model.heads.StandardizedMLP`).

  Small batches: the loss standardizes every projector dimension over the
  batch, so the batch size must be at least 4 (``min_batch_size``, as for
  SimSiam): with 1 example every standardized value is 0, with 2 it is +-1
  whatever its input, and neither passes a gradient to the encoder. With
  ``B`` examples the cross-correlation matrix has rank <= ``B - 1``, so with
  ``B - 1 < projection_dim`` (typical on a phone) it cannot reach the
  identity and the loss has a floor above 0; the batch statistics are also
  noisier. It still learns at batch 8 with the default 64-dimensional
  projector: in the FASSL study (``benchmarks/fassl.py``, README) centralized
  training raised the ``tiny`` encoder's keyword-probe accuracy from 0.347
  (random init) to 0.495.
  """

  min_batch_size = 4

  def __init__(self, config: TaskConfig, encoder_config: EncoderConfig,
               frontend: FrontendConfig, *, seed: int = 0):
    super().__init__(config, encoder_config, frontend, seed=seed)
    # The loss standardizes the output: no output bias (it would get no
    # gradient).
    self.projection = StandardizedMLP(
        (encoder_config.embedding_dim, config.hidden_dim,
         config.projection_dim), standardize_hidden=False,
        standardize_output=False, output_bias=False, rng=self.rng,
        name="head/projection")
    self.weights = self.projection.weights
    self.weight_names = self.projection.weight_names

  def views_loss(self, encoder: Encoder, views: tf.Tensor) -> tf.Tensor:
    # Each view's projections are standardized over its own batch half.
    z1, z2 = (self.projection(v) for v in
              tf.split(encoder(views), 2, axis=0))
    return barlow_twins_loss(z1, z2, self.config.barlow_lambda)
