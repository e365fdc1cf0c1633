"""Shared set-up of the command-line launchers."""

from __future__ import annotations

import shlex
from typing import Any, Mapping

from absl import flags
from absl import logging

__all__ = ["quiet_logging", "command_line"]


def quiet_logging() -> None:
  """Shows warnings and errors only, unless ``--verbosity`` was given.

  TensorFlow and TFF log every saved state and converted graph at INFO;
  progress bars already show what is happening.
  """
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel("ERROR")


def command_line(launcher: str, values: Mapping[str, Any]) -> str:
  """The command that reproduces a config whose flags are named like fields.

  Args:
    launcher: E.g. ``"python -m benchmarks.quality_main"``.
    values: Flag name -> value (``None`` left out, tuples comma-joined).

  Returns:
    A shell-quoted command line.
  """
  args = []
  for name, value in values.items():
    if value is None:
      continue
    if isinstance(value, tuple):
      value = ",".join(map(str, value))
    args.append(shlex.quote(f"--{name}={value}"))
  return " ".join([launcher, *args])
