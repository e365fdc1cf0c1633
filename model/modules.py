"""A ``tf.Module`` whose weights are an ordered, named list of variables."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["WeightModule"]


class WeightModule(tf.Module):
  """Holds weights in creation order with stable, human-readable names.

  The order of ``weights`` is the model's wire format: the federated
  simulation, checkpoints and the exported ``get_weights``/``set_weights``
  signatures all address weights by position and ``weight_names``.
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
