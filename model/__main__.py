"""Prints each encoder preset's size, cost and TFLite builtin-only status.

Usage:
  python -m model [--presets tiny,small] [--tasks audio2vec_cbow,...]
                  [--nocheck_conversion]
"""

from __future__ import annotations

from absl import flags

from model import cli
from model.encoders import ENCODERS
from model.tasks import SSL_TASKS
from model.tflite_compat import presets_report

FLAGS = cli.launcher_flags()

_PRESETS = flags.DEFINE_list("presets", list(ENCODERS), "Encoder presets.",
                             flag_values=FLAGS)
_TASKS = flags.DEFINE_list("tasks", list(SSL_TASKS),
                           "Tasks whose training step is converted.",
                           flag_values=FLAGS)
_CHECK = flags.DEFINE_bool(
    "check_conversion", True,
    "Convert one SGD step of every preset x task with TFLITE_BUILTINS only.",
    flag_values=FLAGS)


def main() -> None:
  print(presets_report(_PRESETS.value, _TASKS.value,
                       check_conversion=_CHECK.value,
                       progress=lambda line: print(line, flush=True)))


def run() -> None:
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
