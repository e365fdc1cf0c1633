"""Optimizers in plain TF ops on ``tf.Variable`` s, for on-device training.

Keras optimizers keep their state in objects the TFLite converter cannot
export as signature tensors; these keep every slot and the step counter as a
float32 ``tf.Variable`` so that ``get_weights``/``set_weights`` carry the
optimizer state with the model. The update rules are those of
``tf.keras.optimizers.SGD`` (with momentum) and ``tf.keras.optimizers.Adam``.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Optional, Sequence

import tensorflow as tf

from model.config_checks import require_positive

__all__ = ["OptimizerConfig", "Optimizer", "SGD", "Adam", "OPTIMIZERS",
           "make_optimizer"]


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """An optimizer and its hyper-parameters.

  Attributes:
    name: Key of ``OPTIMIZERS``.
    learning_rate: Step size.
    momentum: SGD momentum (0 for plain SGD: no slot).
    beta_1: Adam first-moment decay.
    beta_2: Adam second-moment decay.
    epsilon: Adam denominator offset.
  """

  name: str = "adam"
  learning_rate: float = 1e-3
  momentum: float = 0.9
  beta_1: float = 0.9
  beta_2: float = 0.999
  epsilon: float = 1e-7

  def __post_init__(self):
    if self.name not in OPTIMIZERS:
      raise ValueError(f"OptimizerConfig.name: unknown optimizer "
                       f"{self.name!r}; expected one of {sorted(OPTIMIZERS)}")
    require_positive(self, ("learning_rate", "epsilon"))
    for field in ("momentum", "beta_1", "beta_2"):
      if not 0 <= getattr(self, field) < 1:
        raise ValueError(f"OptimizerConfig.{field} must be in [0, 1), got "
                         f"{getattr(self, field)}")

  def hyperparameters(self) -> dict[str, float]:
    """The hyper-parameters the chosen optimizer uses (for the manifest)."""
    return OPTIMIZERS[self.name].hyperparameters(self)


class Optimizer(abc.ABC):
  """Creates its state variables for ``variables`` and updates them in place.

  Attributes:
    config: The hyper-parameters.
    variables: The trained variables.
    state: ``(name, variable)`` of the step counter and every slot, in a
      fixed order: ``optimizer/step``, then each slot of each variable.
  """

  def __init__(self, config: OptimizerConfig,
               variables: Sequence[tf.Variable], names: Sequence[str]):
    """Creates the optimizer state (all float32 zeros).

    Args:
      config: Hyper-parameters.
      variables: The trained variables.
      names: Their names (slot ``s`` of ``w`` is named
        ``optimizer/<w>/<s>``).
    """
    if len(variables) != len(names):
      raise ValueError(f"{type(self).__name__}: {len(variables)} variables "
                       f"but {len(names)} names")
    self.config = config
    self.variables = list(variables)
    self.step = tf.Variable(0.0, name="optimizer.step")
    self.state: list[tuple[str, tf.Variable]] = [("optimizer/step", self.step)]
    self.slots: list[dict[str, tf.Variable]] = []
    for name, variable in zip(names, variables):
      slots = {}
      for slot in self.slot_names():
        slots[slot] = tf.Variable(tf.zeros(variable.shape, tf.float32),
                                  name=f"optimizer.{name}.{slot}".replace(
                                      "/", "."))
        self.state.append((f"optimizer/{name}/{slot}", slots[slot]))
      self.slots.append(slots)

  @classmethod
  @abc.abstractmethod
  def hyperparameters(cls, config: OptimizerConfig) -> dict[str, float]:
    """The hyper-parameters of ``config`` this optimizer uses."""

  @abc.abstractmethod
  def slot_names(self) -> tuple[str, ...]:
    """Names of the per-variable slots."""

  @abc.abstractmethod
  def gradient_slot(self) -> Optional[str]:
    """The slot whose update is linear in the gradient, or None.

    None means the variables themselves move by ``-learning_rate * grad``.
    Comparing this slot's update with another implementation's checks the
    gradients, free of Adam's sign-like amplification of rounding.
    """

  @abc.abstractmethod
  def _update(self, variable: tf.Variable, grad: tf.Tensor,
              slots: dict[str, tf.Variable], step: tf.Tensor) -> None:
    """Updates one variable and its slots; ``step`` counts from 1."""

  def apply(self, grads: Sequence[tf.Tensor]) -> None:
    """One step: updates the variables, their slots and the step counter.

    Args:
      grads: One gradient per variable, in construction order.

    Raises:
      ValueError: The number of gradients is wrong or one is None.
    """
    if len(grads) != len(self.variables):
      raise ValueError(f"{type(self).__name__}.apply: expected "
                       f"{len(self.variables)} gradients, got {len(grads)}")
    step = self.step + 1.0
    for grad, variable, slots in zip(grads, self.variables, self.slots):
      if grad is None:
        raise ValueError(f"{type(self).__name__}.apply: no gradient for "
                         f"{variable.name}")
      self._update(variable, grad, slots, step)
    self.step.assign(step)


class SGD(Optimizer):
  """SGD with (Keras-style) momentum: ``m = mu m - lr g; w += m``."""

  @classmethod
  def hyperparameters(cls, config: OptimizerConfig) -> dict[str, float]:
    return {"learning_rate": config.learning_rate, "momentum": config.momentum}

  def slot_names(self) -> tuple[str, ...]:
    return ("momentum",) if self.config.momentum else ()

  def gradient_slot(self) -> Optional[str]:
    return "momentum" if self.config.momentum else None

  def _update(self, variable, grad, slots, step):
    lr = self.config.learning_rate
    if not self.config.momentum:
      variable.assign_sub(lr * grad)
      return
    momentum = slots["momentum"]
    momentum.assign(self.config.momentum * momentum - lr * grad)
    variable.assign_add(momentum)


class Adam(Optimizer):
  """Adam (Kingma & Ba, 2015) with bias correction, as Keras computes it."""

  @classmethod
  def hyperparameters(cls, config: OptimizerConfig) -> dict[str, float]:
    return {"learning_rate": config.learning_rate, "beta_1": config.beta_1,
            "beta_2": config.beta_2, "epsilon": config.epsilon}

  def slot_names(self) -> tuple[str, ...]:
    return ("m", "v")

  def gradient_slot(self) -> Optional[str]:
    return "m"

  def _update(self, variable, grad, slots, step):
    c = self.config
    alpha = (c.learning_rate * tf.sqrt(1.0 - tf.pow(c.beta_2, step))
             / (1.0 - tf.pow(c.beta_1, step)))
    m, v = slots["m"], slots["v"]
    m.assign_add((grad - m) * (1.0 - c.beta_1))
    v.assign_add((tf.square(grad) - v) * (1.0 - c.beta_2))
    variable.assign_sub(m * alpha / (tf.sqrt(v) + c.epsilon))


#: Optimizer classes, keyed by flag value.
OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam}


def make_optimizer(config: OptimizerConfig, variables: Sequence[tf.Variable],
                   names: Sequence[str]) -> Optimizer:
  """Builds ``config``'s optimizer with state for ``variables``."""
  return OPTIMIZERS[config.name](config, variables, names)
