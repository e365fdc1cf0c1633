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

_OUT_DIR = cli.define("out_dir", None, required=True)
_TFLITE = flags.DEFINE_string("tflite", None,
                              "A .tflite file (else --preset/--task).")
_SIGNATURE = flags.DEFINE_string("signature", "train", "Signature key.")
_PRESET = flags.DEFINE_enum("preset", "small", list(ENCODERS),
                            "Encoder preset of the exported model.")
_TASK = flags.DEFINE_enum("task", "temporal_gap", list(SSL_TASKS),
                          "SSL task of the exported model.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Static train batch.",
                                   lower_bound=1)
_FORMULATION = flags.DEFINE_enum("formulation", "delegate",
                                 ["delegate", "custom"],
                                 "model.ops formulation of the export.")
_THREADS = flags.DEFINE_integer("threads", 1, "Runtime threads.",
                                lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed samples per operator.",
                                lower_bound=1)
_CLOCK = flags.DEFINE_enum("clock", "cpu", ["cpu", "wall"],
                           "Process CPU time or wall time.")


def _content() -> tuple[bytes, str]:
  if _TFLITE.value:
    try:
      with open(_TFLITE.value, "rb") as f:
        return f.read(), os.path.basename(_TFLITE.value)
    except OSError as e:
      raise cli.UserError(f"--tflite {_TFLITE.value}: {e}") from e
  # pylint: disable=import-outside-toplevel
  from export.conversion import convert_training_model
  from export.exporter import fresh_source
  from export.ondevice_module import OnDeviceModule
  from export.optimizers import OptimizerConfig
  module = OnDeviceModule(fresh_source(_PRESET.value, _TASK.value).model,
                          OptimizerConfig("sgd", learning_rate=0.01),
                          _BATCH_SIZE.value, mode="builtin",
                          formulation=_FORMULATION.value)
  return convert_training_model(module).content, (
      f"{_PRESET.value} / {_TASK.value} / batch {_BATCH_SIZE.value} / "
      f"{_FORMULATION.value}")


def main() -> None:
  content, title = _content()
  from tqdm import tqdm  # pylint: disable=import-outside-toplevel
  bar = tqdm(desc="operators", unit="op")

  def progress(done, total):
    bar.total = total
    bar.update(done - bar.n)

  try:
    result = op_profile.profile(content, _SIGNATURE.value,
                                threads=_THREADS.value,
                                repeats=_REPEATS.value, clock=_CLOCK.value,
                                progress=progress)
  except KeyError as e:
    raise cli.UserError(f"--signature: {e.args[0]}") from e
  finally:
    bar.close()
  report = op_profile.format_report(result, title=title)
  print(report)
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  with open(os.path.join(_OUT_DIR.value, "op_profile.md"), "w",
            encoding="utf-8") as f:
    f.write(report)
  op_profile.write_csv(os.path.join(_OUT_DIR.value, "op_profile.csv"), result)
  op_profile.plot(os.path.join(_OUT_DIR.value, "op_profile.png"), result,
                  title=title)


def run() -> None:
  cli.run(main)


if __name__ == "__main__":
  run()
