"""Random draws of the SSL tasks: stateful by default, stateless under a seed.

On the device (and in exported ``.tflite`` files) tasks draw crops and
augmentations with TF's stateful random ops (TFLite builtins RANDOM_UNIFORM
and RANDOM_STANDARD_NORMAL). Inside ``with stateless_seed(seed):`` the same
draws come from ``tf.random.stateless_*`` keyed by ``seed`` and a per-trace
counter, so a training step is a pure function of (weights, batch, seed): a
resumed centralized or federated run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Sequence

import tensorflow as tf

__all__ = ["stateless_seed", "uniform", "normal"]

_state = threading.local()


@contextlib.contextmanager
def stateless_seed(seed: tf.Tensor) -> Iterator[None]:
  """Makes :func:`uniform`/:func:`normal` stateless, keyed by ``seed``.

  Args:
    seed: int32/int64 tensor of shape [2] (e.g. ``[run_seed, step]``).
  """
  previous = getattr(_state, "seed", None), getattr(_state, "counter", 0)
  _state.seed = tf.cast(seed, tf.int64)
  _state.counter = 0
  try:
    yield
  finally:
    _state.seed, _state.counter = previous


def _next_seed() -> tf.Tensor | None:
  seed = getattr(_state, "seed", None)
  if seed is None:
    return None
  _state.counter += 1
  return seed + tf.constant([0, 1_000_003], tf.int64) * _state.counter


def uniform(shape: Sequence[int], minval: float = 0.0,
            maxval: float = 1.0) -> tf.Tensor:
  """float32 uniform draws in ``[minval, maxval)``."""
  seed = _next_seed()
  if seed is None:
    return tf.random.uniform(shape, minval, maxval)
  return tf.random.stateless_uniform(shape, seed, minval, maxval)


def normal(shape: Sequence[int], stddev: float = 1.0) -> tf.Tensor:
  """float32 zero-mean Gaussian draws."""
  seed = _next_seed()
  if seed is None:
    return tf.random.normal(shape, stddev=stddev)
  return tf.random.stateless_normal(shape, seed, stddev=stddev)
