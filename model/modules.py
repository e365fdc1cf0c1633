"""A ``tf.Module`` whose weights are an ordered, named list of variables."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import numpy as np
import tensorflow as tf

from model import randomness

__all__ = ["WeightModule", "weight_noise"]

_state = threading.local()


@contextlib.contextmanager
def weight_noise(stddev: float) -> Iterator[None]:
  """Adds Gaussian noise to every weight read while active ("variational noise").

  The forward pass sees ``w + eps`` with ``eps ~ N(0, stddev^2)`` drawn anew
  at each call; gradients flow to ``w``. Federated speech work uses it in
  local training to compensate the quality loss of non-IID data.
  """
  if stddev < 0:
    raise ValueError(f"weight_noise: stddev must be >= 0, got {stddev}")
  previous = getattr(_state, "stddev", 0.0)
  _state.stddev = stddev
  try:
    yield
  finally:
    _state.stddev = previous


class WeightModule(tf.Module):
  """Holds weights in creation order with stable, human-readable names.

  The order of ``weights`` is the model's wire format: the federated
  simulation, checkpoints and the exported ``get_weights``/``set_weights``
  signatures all address weights by position and ``weight_names``. Forward
  passes read weights through :meth:`params`, which applies
  :func:`weight_noise` when it is active.
  """

  def __init__(self, name: str):
    """Creates an empty module.

    Args:
      name: Prefix of the weight names, e.g. ``"encoder"`` or ``"head/mlp"``.
    """
    super().__init__(name=name.replace("/", "_"))
    self.prefix = name
    self.weights: list[tf.Variable] = []
    self.weight_names: list[str] = []

  def add_weight(self, weight_name: str, value: np.ndarray) -> tf.Variable:
    """Creates a trainable float32 variable named ``<module>/<weight_name>``."""
    full_name = f"{self.prefix}/{weight_name}"
    variable = tf.Variable(np.asarray(value, np.float32),
                           name=full_name.replace("/", "."), trainable=True)
    self.weights.append(variable)
    self.weight_names.append(full_name)
    return variable

  def params(self) -> list[tf.Tensor]:
    """The weights as used by a forward pass (noisy under weight_noise)."""
    stddev = getattr(_state, "stddev", 0.0)
    if not stddev:
      return list(self.weights)
    return [w + randomness.normal(w.shape, stddev) for w in self.weights]
