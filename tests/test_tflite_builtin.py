"""A full training step of every task converts to TFLite builtins and trains
under tflite_runtime (the on-device runtime, which has no Flex kernels)."""

import numpy as np
import pytest
import tensorflow as tf
import tflite_runtime.interpreter as tflite

from model.encoders import ENCODERS
from model.ssl_model import ModelSpec, SSLModel
from model.tasks import SSL_TASKS
from model.tflite_compat import (FlexOpsError, convert, operator_names,
                                 select_tf_ops, sgd_train_module)

BATCH = 4
# Tasks without in-graph randomness: TFLite must track TF step by step.
DETERMINISTIC = ("audio2vec_cbow", "audio2vec_skipgram")


def _batch(samples: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  t = np.arange(samples) / 16000.0
  tones = np.sin(2 * np.pi * rng.uniform(150, 2000, (BATCH, 1)) * t)
  return (0.3 * tones + 0.05 * rng.standard_normal((BATCH, samples))).astype(
      np.float32)


#: Tasks whose builtin training step is also checked in ``make test-fast``
#: (one predictive, one feature-matching); the others are marked slow.
_FAST_TASKS = ("audio2vec_cbow", "nt_xent")


@pytest.mark.parametrize("task", [
    task if task in _FAST_TASKS else pytest.param(task, marks=pytest.mark.slow)
    for task in sorted(SSL_TASKS)])
def test_train_step_is_builtin_and_trains(task):
  spec = ModelSpec(task=task, encoder=ENCODERS["tiny"])
  model = SSLModel(spec)
  tflite_model = convert(sgd_train_module(model, BATCH, 0.05), ["train"])
  assert not select_tf_ops(tflite_model)
  # Convs lower to shifted slices + FULLY_CONNECTED (XNNPACK runs those with
  # variable weights), gradient masks to arithmetic.
  names = operator_names(tflite_model)
  assert "FULLY_CONNECTED" in names
  assert not {"CONV_2D", "REVERSE_V2"} & set(names), names

  interpreter = tflite.Interpreter(model_content=tflite_model)
  interpreter.allocate_tensors()
  train = interpreter.get_signature_runner("train")
  reference = sgd_train_module(SSLModel(spec), BATCH, 0.05)
  x = _batch(model.example_samples)
  ours = [float(train(waveform=x)["loss"]) for _ in range(8)]
  assert np.all(np.isfinite(ours))
  if task in DETERMINISTIC:
    theirs = [float(reference.train(tf.constant(x))["loss"]) for _ in range(8)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    assert ours[-1] < ours[0]
  else:
    assert len(set(ours)) > 1  # Weights (and random views) change.


def test_flex_gradient_is_rejected():
  """TF's own Conv2D gradient needs Flex: builtin-only conversion must fail."""

  class Naive(tf.Module):

    def __init__(self):
      super().__init__()
      self.kernel = tf.Variable(tf.random.normal([3, 3, 1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([2, 8, 8, 1], tf.float32)])
    def train(self, x):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.nn.conv2d(x, self.kernel, 1, "SAME"))
      self.kernel.assign_sub(0.1 * tape.gradient(loss, self.kernel))
      return {"loss": loss}

  with pytest.raises(FlexOpsError, match="Conv2DBackpropFilter"):
    convert(Naive(), ["train"])
