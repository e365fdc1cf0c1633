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
from model.encoders import Encoder, EncoderConfig, encode
from model.features import FrontendConfig
from model.heads import StandardizedMLP
from model.tasks.base import TaskConfig
from model.tasks.nt_xent import TwoViewTask

__all__ = ["SimSiam", "frozen", "negative_cosine", "simsiam_loss"]


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

  Projector: the paper's three layers, ``embedding -> hidden_dim ->
  hidden_dim -> projection_dim``, each output batch-standardized (ReLU after
  the hidden ones); predictor: ``projection_dim -> predictor_hidden_dim ->
  projection_dim`` with it on the bottleneck only. The batch norms are
  training-mode, without scale, shift or running statistics (only the
  encoder is used at inference). The minimum -1 of the loss is also reached
  by a collapsed encoder; the stop-gradient and the standardized projector
  are what keep training away from it. With the standardization of the
  projector's hidden layers left out (an earlier version, to keep the
  encoder's output bias trained) the encoder collapsed partly on the
  ``full`` corpus (effective rank of its embeddings ~9-13 of 128; probes
  below random init on speaker and retrieval), and a 3-layer projector
  without it on its first layer still fell below random init on retrieval.

  The encoder's output bias: the projector standardizes its first layer, so
  the loss does not depend on that bias; its gradient is zero analytically
  and rounding noise numerically, which TF and TFLite round differently (an
  export's relative gradient check would compare noise). The task reads the
  bias through :func:`frozen` (exactly zero gradient): it stays at its
  initial value, which only shifts every embedding by one constant.

  Small batches: the batch size must be at least 4 (``min_batch_size``).
  Standardized over 2 examples every value is +-1 whatever its input, so
  no gradient passes a standardized layer (nothing before the predictor's
  output layer would train); over 3 one degree of freedom per unit is left.
  Smaller batches also make the statistics noisier.
  """

  min_batch_size = 4

  def __init__(self, config: TaskConfig, encoder_config: EncoderConfig,
               frontend: FrontendConfig, *, seed: int = 0):
    super().__init__(config, encoder_config, frontend, seed=seed)
    self.projector = StandardizedMLP(
        (encoder_config.embedding_dim, config.hidden_dim, config.hidden_dim,
         config.projection_dim), standardize_hidden=True,
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
    params = encoder.params()
    bias = encoder.weight_names.index(f"{encoder.prefix}/embedding/bias")
    params[bias] = frozen(params[bias])
    # Each view's projections are standardized over its own batch half.
    z1, z2 = (self.projector(v) for v in
              tf.split(encode(encoder.config, params, views), 2, axis=0))
    return simsiam_loss(self.predictor(z1), self.predictor(z2), z1, z2)


def frozen(x: tf.Tensor) -> tf.Tensor:
  """``x`` with an exactly zero gradient (not None: every weight of a model
  keeps a gradient, as optimizers, federated aggregation and the exported
  ``train`` signature expect)."""
  return tf.stop_gradient(x) + 0.0 * x
