"""The shared config checks name the class, the field, the limit and the value."""

import dataclasses
from typing import Optional

import pytest

from model.config_checks import (require_choice, require_non_negative,
                                 require_positive)
from model.train import TrainConfig
from tff_sim.algorithms import AlgorithmConfig


@dataclasses.dataclass(frozen=True)
class _Config:
  steps: int = 1
  rate: Optional[float] = None
  noise: float = 0.0
  kind: str = "a"


def test_valid_values_pass():
  require_positive(_Config(), ("steps", "rate"))
  require_non_negative(_Config(), ("noise",))
  require_choice(_Config(), ("kind",), {"a": 1})


@pytest.mark.parametrize("value", [0, -1, float("nan")])
def test_require_positive_names_the_field_and_value(value):
  with pytest.raises(ValueError,
                     match=rf"_Config\.steps must be positive, got {value}"):
    require_positive(_Config(steps=value), ("steps",))


def test_require_non_negative_names_the_field_and_value():
  with pytest.raises(ValueError, match=r"_Config\.noise must be >= 0, got -0.5"):
    require_non_negative(_Config(noise=-0.5), ("noise",))
  with pytest.raises(ValueError, match=r"_Config\.noise must be >= 0, got nan"):
    require_non_negative(_Config(noise=float("nan")), ("noise",))


def test_require_choice_lists_the_choices():
  with pytest.raises(ValueError, match=r"_Config\.kind: unknown 'b'; expected "
                     r"one of \['a', 'c'\]"):
    require_choice(_Config(kind="b"), ("kind",), {"c": 0, "a": 1})


def test_real_configs_use_them():
  with pytest.raises(ValueError, match=r"TrainConfig\.log_every must be "
                     r"positive, got 0"):
    TrainConfig(log_every=0)
  with pytest.raises(ValueError, match=r"AlgorithmConfig\.proximal_mu must be "
                     r">= 0, got -1"):
    AlgorithmConfig(proximal_mu=-1.0)
  AlgorithmConfig(server_learning_rate=None)  # Unset optional rate passes.
