"""The SSL model as a ``tff.learning.models.VariableModel``.

The client objective is ``SSLModel.loss``: the same front-end, encoder and
task functions as centralized training and the exported ``.tflite``.
"""

from __future__ import annotations

import collections
from typing import Callable

import tensorflow as tf
import tensorflow_federated as tff

from model import randomness
from model.modules import weight_noise
from model.ssl_model import ModelSpec, SSLModel

__all__ = ["SSLVariableModel", "model_fn_for"]


class SSLVariableModel(tff.learning.models.VariableModel):
  """Wraps an :class:`SSLModel`; batches carry a seed for in-graph draws.

  Args:
    model: The SSL model whose weights are trained.
    batch_size: Static batch size of the client datasets.
    weight_noise_std: Std of Gaussian weight noise during local training
      (0 disables it).
  """

  def __init__(self, model: SSLModel, batch_size: int, *,
               weight_noise_std: float = 0.0):
    self._model = model
    self._noise = weight_noise_std
    self._input_spec = collections.OrderedDict(
        waveform=tf.TensorSpec([batch_size, model.example_samples], tf.float32),
        seed=tf.TensorSpec([2], tf.int64))
    self._loss_sum = tf.Variable(0.0, trainable=False, name="loss_sum")
    self._num_examples = tf.Variable(0, dtype=tf.int64, trainable=False,
                                     name="num_examples")

  @property
  def trainable_variables(self):
    return list(self._model.weights)

  @property
  def non_trainable_variables(self):
    return []

  @property
  def local_variables(self):
    return [self._loss_sum, self._num_examples]

  @property
  def input_spec(self):
    return self._input_spec

  @tf.function
  def forward_pass(self, batch_input, training=True):
    waveform = batch_input["waveform"]
    with randomness.stateless_seed(batch_input["seed"]), weight_noise(
        self._noise if training else 0.0):
      loss = self._model.loss(waveform)
    batch = tf.shape(waveform, out_type=tf.int64)[0]
    self._loss_sum.assign_add(loss * tf.cast(batch, tf.float32))
    self._num_examples.assign_add(batch)
    return tff.learning.models.BatchOutput(
        loss=loss, predictions=(), num_examples=tf.cast(batch, tf.int32))

  @tf.function
  def predict_on_batch(self, batch_input, training=True):
    del training  # Embeddings do not depend on it (no dropout/normalization).
    return self._model.embed_patches(batch_input)

  @tf.function
  def report_local_unfinalized_metrics(self):
    return collections.OrderedDict(
        loss=[self._loss_sum, tf.cast(self._num_examples, tf.float32)],
        num_examples=self._num_examples)

  def metric_finalizers(self):
    return collections.OrderedDict(
        loss=tf.function(func=lambda x: x[0] / tf.maximum(x[1], 1.0)),
        num_examples=tf.function(func=lambda x: x))

  @tf.function
  def reset_metrics(self):
    self._loss_sum.assign(0.0)
    self._num_examples.assign(0)


def model_fn_for(spec: ModelSpec, batch_size: int, *,
                 weight_noise_std: float = 0.0
                 ) -> Callable[[], SSLVariableModel]:
  """A no-argument ``model_fn`` building a fresh model, as TFF requires."""
  return lambda: SSLVariableModel(SSLModel(spec), batch_size,
                                  weight_noise_std=weight_noise_std)
