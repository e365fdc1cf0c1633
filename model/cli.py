"""Shared set-up of the command-line launchers."""

from __future__ import annotations

from absl import flags
from absl import logging

__all__ = ["quiet_logging"]


def quiet_logging() -> None:
  """Shows warnings and errors only, unless ``--verbosity`` was given.

  TensorFlow and TFF log every saved state and converted graph at INFO;
  progress bars already show what is happening.
  """
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel("ERROR")
