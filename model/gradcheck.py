"""Compares each custom gradient in :mod:`model.ops` with TensorFlow's own
(the same op built under :func:`model.ops.tf_gradients`)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from model import ops

__all__ = ["max_relative_error", "gradient_errors"]


def max_relative_error(got: tf.Tensor, want: tf.Tensor) -> float:
  """``max|got - want| / max|want|`` (absolute error if ``want`` is all zero)."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  scale = np.max(np.abs(want))
  return float(np.max(np.abs(got - want)) / (scale if scale > 0 else 1.0))


def _grads(fn: Callable[..., tf.Tensor], inputs: list[tf.Tensor],
           upstream: tf.Tensor) -> list[tf.Tensor]:
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    out = fn(*inputs)
  return tape.gradient(out, inputs, output_gradients=upstream)


def gradient_errors(seed: int = 0, batch: int = 4, *,
                    formulation: str = "custom",
                    outputs: bool = False) -> dict[str, float]:
  """Max relative error of every custom gradient vs TF's, on random inputs.

  Each op is evaluated on Gaussian inputs with a random upstream gradient;
  the returned dict maps ``"<op>/<input>"`` to the max relative error.

  Args:
    seed: Seed of the inputs.
    batch: Batch of the inputs.
    formulation: The :data:`model.ops.FORMULATIONS` entry compared with
      ``tf``.
    outputs: Also compare the forward outputs (keys ``"<op>/output"``).
  """
  rng = np.random.default_rng(seed)
  normal = lambda *shape: tf.constant(rng.standard_normal(shape), tf.float32)
  errors = {}

  def compare(name, op, reference, inputs, input_names):
    def ours(*args):
      with ops.formulation(formulation):
        return op(*args)
    if outputs:
      errors[f"{name}/output"] = max_relative_error(ours(*inputs),
                                                    reference(*inputs))
    upstream = normal(*ours(*inputs).shape)
    for input_name, got, want in zip(
        input_names, _grads(ours, inputs, upstream),
        _grads(reference, inputs, upstream)):
      errors[f"{name}/{input_name}"] = max_relative_error(got, want)

  def reference(op):
    def fn(*args):
      with ops.tf_gradients():
        return op(*args)
    return fn

  # Every filter gradient formulation of ``delegate``: per-example products
  # of x with the slices of dy (patches of x wider than dy: the next
  # three), or of the patches of x (one channel, and four; large maps, 32
  # outputs), one product over all positions (8 outputs), and of x with
  # the patches of a one-channel dy (the last).
  for kh, kw, cin, cout, height, width in [
      (1, 3, 1, 32, 16, 12), (1, 3, 4, 32, 8, 6), (1, 3, 2, 8, 4, 6),
      (3, 1, 16, 32, 16, 12), (3, 3, 6, 5, 16, 12), (3, 1, 12, 6, 4, 6),
      (3, 3, 5, 1, 8, 6)]:
    conv = lambda x, k: ops.conv2d(x, k, tf.zeros([k.shape[-1]]))
    compare(f"conv2d_{kh}x{kw}_{height}x{width}", conv, reference(conv),
            [normal(batch, height, width, cin), normal(kh, kw, cin, cout)],
            ["input", "kernel"])
  # A one-channel 1x3 -> 3x1 pair (composed into one 3x3 conv in every
  # formulation) against TF's two convs: both filter gradient paths of the
  # composed kernel in ``delegate`` (8 and 32 outputs), non-zero biases (the
  # per-row bias at the edges).
  two_convs = lambda x, k1, b1, k2, b2: ops.conv2d(ops.conv2d(x, k1, b1), k2,
                                                   b2)
  for mid, cout, height, width in [(4, 5, 8, 6), (6, 32, 16, 12)]:
    compare(f"conv_pair_{cout}_{height}x{width}", ops.conv_pair,
            reference(two_convs),
            [normal(batch, height, width, 1), normal(1, 3, 1, mid),
             normal(mid), normal(3, 1, mid, cout), normal(cout)],
            ["input", "first", "first_bias", "second", "second_bias"])
  for name, op, shape in [
      ("relu", ops.relu, (batch, 8, 8, 3)),
      ("relu_max_pool2x2", ops.relu_max_pool2x2, (batch, 8, 6, 3)),
      ("relu_global_max", ops.relu_global_max, (batch, 6, 4, 5)),
      ("upsample2x", ops.upsample2x, (batch, 3, 4, 2)),
      ("relu_dense", lambda x: ops.relu(x), (batch, 9)),
      ("l2_normalize", ops.l2_normalize, (batch, 9))]:
    compare(name, op, reference(op), [normal(*shape)], ["input"])
  compare("softplus", ops.softplus, reference(ops.softplus),
          [normal(batch, 7) * 5], ["input"])
  # Over 1 or 2 rows the standardized values are constant (0 or +-1) and
  # the gradient ~0: check it on >= 4 rows.
  compare("batch_standardize", ops.batch_standardize,
          reference(ops.batch_standardize),
          [normal(max(batch, 4), 6) * 3 + 1], ["input"])
  dense = lambda x, k: ops.dense(x, k, tf.zeros([k.shape[-1]]))
  compare("dense", dense, reference(dense), [normal(batch, 12), normal(12, 5)],
          ["input", "kernel"])
  return errors
