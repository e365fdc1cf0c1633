"""Prints each encoder preset's size, cost and TFLite builtin-only status.

Usage:
  python -m model [--presets tiny,small] [--tasks audio2vec_cbow,...]
                  [--nocheck_conversion]
"""

from __future__ import annotations

from absl import flags

from model import cli
from model.encoders import ENCODERS
from model.features import FrontendConfig
from model.gradcheck import gradient_errors
from model.ssl_model import ModelSpec, SSLModel
from model.tasks import SSL_TASKS
from model.tflite_compat import check_builtin_training

_PRESETS = flags.DEFINE_list("presets", list(ENCODERS), "Encoder presets.")
_TASKS = flags.DEFINE_list("tasks", list(SSL_TASKS),
                           "Tasks whose training step is converted.")
_CHECK = flags.DEFINE_bool(
    "check_conversion", True,
    "Convert one SGD step of every preset x task with TFLITE_BUILTINS only.")


def main() -> None:
  for name in _PRESETS.value + _TASKS.value:
    if name not in ENCODERS and name not in SSL_TASKS:
      raise cli.UserError(f"unknown preset or task {name!r}; presets: "
                           f"{sorted(ENCODERS)}, tasks: {sorted(SSL_TASKS)}")
  header = ["preset", "channels", "embedding", "params", "MFLOPs/patch"]
  if _CHECK.value:
    header.append("builtin-only train step")
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for preset in _PRESETS.value:
    config = ENCODERS[preset]
    row = [preset, "-".join(map(str, config.channels)),
           str(config.embedding_dim), f"{config.num_params:,}",
           f"{config.forward_mflops(FrontendConfig().patch_shape):.2f}"]
    if _CHECK.value:
      failed = []
      for task in _TASKS.value:
        result = check_builtin_training(
            SSLModel(ModelSpec(task=task, encoder=config)))
        if not result.ok:
          failed.append(f"{task}: {result.error}")
      row.append(f"yes ({len(_TASKS.value)} tasks)" if not failed
                 else "NO: " + "; ".join(failed))
    print("| " + " | ".join(row) + " |", flush=True)
  errors = gradient_errors()
  worst = max(errors, key=errors.get)
  print(f"\nCustom gradients vs TensorFlow's own (random inputs): max relative "
        f"error {errors[worst]:.2e} ({worst}) over {len(errors)} checks")


def run() -> None:
  cli.run(main)


if __name__ == "__main__":
  run()
