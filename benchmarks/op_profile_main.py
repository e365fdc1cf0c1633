"""Launcher of the per-operator profile of an on-device ``.tflite``.

Usage:
  python -m benchmarks.op_profile_main --out_dir P --tflite model.tflite \\
      [--signature train]
  python -m benchmarks.op_profile_main --out_dir P --preset small \\
      --task temporal_gap --batch_size 32 [--formulation delegate]

The second form exports the ``train`` model of a fresh (untrained) module
first (SGD). Prints the Markdown report; ``op_profile.md``,
``op_profile.csv`` and ``op_profile.png`` go to --out_dir.
"""

from __future__ import annotations

import os

from absl import flags

from benchmarks import op_profile
from model import cli
from model.encoders import ENCODERS
from model.tasks import SSL_TASKS

FLAGS = cli.launcher_flags()

_OUT_DIR = cli.define("out_dir", None, required=True, flag_values=FLAGS)
_TFLITE = flags.DEFINE_string("tflite", None,
                              "A .tflite file (else --preset/--task).",
                              flag_values=FLAGS)
_SIGNATURE = flags.DEFINE_string("signature", "train", "Signature key.",
                                 flag_values=FLAGS)
_PRESET = flags.DEFINE_enum("preset", "small", list(ENCODERS),
                            "Encoder preset of the exported model.",
                            flag_values=FLAGS)
_TASK = flags.DEFINE_enum("task", "temporal_gap", list(SSL_TASKS),
                          "SSL task of the exported model.", flag_values=FLAGS)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Static train batch.",
                                   lower_bound=1, flag_values=FLAGS)
_FORMULATION = flags.DEFINE_enum("formulation", "delegate",
                                 ["delegate", "custom"],
                                 "model.ops formulation of the export.",
                                 flag_values=FLAGS)
_THREADS = flags.DEFINE_integer("threads", 1, "Runtime threads.",
                                lower_bound=1, flag_values=FLAGS)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed samples per operator.",
                                lower_bound=1, flag_values=FLAGS)
_CLOCK = flags.DEFINE_enum("clock", "cpu", ["cpu", "wall"],
                           "Process CPU time or wall time.", flag_values=FLAGS)


def _content() -> tuple[bytes, str]:
  if not _TFLITE.value:
    return op_profile.training_model(_PRESET.value, _TASK.value,
                                     _BATCH_SIZE.value, _FORMULATION.value)
  try:
    with open(_TFLITE.value, "rb") as f:
      return f.read(), os.path.basename(_TFLITE.value)
  except OSError as e:
    raise cli.UserError(f"--tflite {_TFLITE.value}: {e}") from e


def main() -> None:
  content, title = _content()
  try:
    _, report = op_profile.run_profile(
        content, _SIGNATURE.value, _OUT_DIR.value, title=title,
        threads=_THREADS.value, repeats=_REPEATS.value, clock=_CLOCK.value)
  except KeyError as e:
    raise cli.UserError(f"--signature: {e.args[0]}") from e
  print(report)


def run() -> None:
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
