"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning",
CVPR 2021): a predictor maps one view's projection onto the other view's,
whose projection is held fixed by a stop-gradient; symmetric negative cosine.

No EMA target network (BYOL's): in cross-device federated learning a client
takes part in a few rounds only and keeps no state between them, so a target
network would either be restarted from the online weights at every round
(then it *is* SimSiam) or be sent down with every round and averaged as a
second model (twice the download for a slowly moving copy). SimSiam shows
that the stop-gradient alone prevents collapse, so every weight that goes over
the wire is trained, and the client update is the same stateless function as
for the other tasks.
"""

from __future__ import annotations

import tensorflow as tf

from model import ops
from model.encoders import Encoder, EncoderConfig
from model.features import FrontendConfig
from model.heads import StandardizedMLP
from model.tasks.base import TaskConfig
from model.tasks.nt_xent import TwoViewTask

__all__ = ["SimSiam", "negative_cosine", "simsiam_loss"]


def negative_cosine(p: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
  """Mean of ``-cos(p_i, stop_gradient(z_i))`` over rows; in [-1, 1]."""
  z = tf.stop_gradient(ops.l2_normalize(z))
  return -tf.reduce_mean(tf.reduce_sum(ops.l2_normalize(p) * z, axis=-1))


def simsiam_loss(p1: tf.Tensor, p2: tf.Tensor, z1: tf.Tensor, z2: tf.Tensor
                 ) -> tf.Tensor:
  """``(D(p1, z2) + D(p2, z1)) / 2`` with ``D`` = :func:`negative_cosine`."""
  return 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))


class SimSiam(TwoViewTask):
  """SimSiam on two augmented views.

  Projector: ``embedding -> hidden_dim -> ReLU -> projection_dim`` with
  batch standardization of the output; predictor: ``projection_dim ->
  predictor_hidden_dim -> ReLU -> projection_dim`` with it on the
  bottleneck, as in the paper (its batch norms, without running statistics:
  only the encoder is used at inference). The paper's batch norm on the
  projector's hidden layer is left out: it would leave the encoder's output
  bias without gradient (see :class:`model.heads.StandardizedMLP`). The minimum -1 of the loss is also reached
  by a collapsed encoder; the stop-gradient and the standardized projector
  are what keep training away from it.

  Small batches: batch standardization needs a batch of at least 2
  (``min_batch_size``); smaller batches make its statistics noisier.
  """

  def __init__(self, config: TaskConfig, encoder_config: EncoderConfig,
               frontend: FrontendConfig, *, seed: int = 0):
    super().__init__(config, encoder_config, frontend, seed=seed)
    self.projector = StandardizedMLP(
        (encoder_config.embedding_dim, config.hidden_dim,
         config.projection_dim), standardize_hidden=False,
        standardize_output=True, output_bias=False, rng=self.rng,
        name="head/projector")
    self.predictor = StandardizedMLP(
        (config.projection_dim, config.predictor_hidden_dim,
         config.projection_dim), standardize_hidden=True,
        standardize_output=False, output_bias=True, rng=self.rng,
        name="head/predictor")
    self.weights = self.projector.weights + self.predictor.weights
    self.weight_names = (self.projector.weight_names
                         + self.predictor.weight_names)

  def views_loss(self, encoder: Encoder, views: tf.Tensor) -> tf.Tensor:
    # Each view's projections are standardized over its own batch half.
    z1, z2 = (self.projector(v) for v in
              tf.split(encoder(views), 2, axis=0))
    return simsiam_loss(self.predictor(z1), self.predictor(z2), z1, z2)
