"""The demo on built-in data: corpus -> federated and centralized SSL ->
probes -> on-device TFLite export that keeps training under LiteRT.

Usage:
  python -m benchmarks.demo_main --out_dir demo_output [--task triplet]

Generates the ``demo`` synthetic corpus (reused when present), pre-trains the
encoder with a self-supervised task federatedly in TensorFlow Federated
(natural partition: one client per speaker/device) and centrally on the same
number of examples, then compares both with a random-init encoder by linear
probes on every downstream label. Prints the table and writes it as Markdown,
CSV and a PNG bar chart, next to the simulation's quality-vs-cost plot. Then
exports the federated encoder as a builtin-only TFLite training model (plus
float32 / int8 embed models), verifies it against TF, and trains it for a few
steps on corpus audio under LiteRT, as a phone would. Last, it benchmarks the
exported files: FLOPs per signature, LiteRT latency of ``train`` and
``embed``, and the share of FLOPs XNNPACK runs (Markdown + PNG). Rerunning
reuses or resumes every finished stage.
"""

from __future__ import annotations

from absl import flags

from benchmarks.demo import DemoConfig, run_demo
from model import cli

FLAGS = cli.launcher_flags()

_DEFAULT = DemoConfig()

# Flags are named after the DemoConfig fields they set.
_OUT_DIR = cli.define("out_dir", _DEFAULT.out_dir, flag_values=FLAGS)
_CORPUS = cli.define("corpus", _DEFAULT.corpus, flag_values=FLAGS)
_TASK = cli.define("task", _DEFAULT.task, flag_values=FLAGS)
_ENCODER = cli.define("encoder", _DEFAULT.encoder, flag_values=FLAGS)
_ROUNDS = cli.define("rounds", _DEFAULT.rounds, flag_values=FLAGS)
_CLIENTS = cli.define("clients_per_round", _DEFAULT.clients_per_round,
                      flag_values=FLAGS)
_LOCAL_STEPS = cli.define("max_local_steps", _DEFAULT.max_local_steps,
                          flag_values=FLAGS)
_BATCH = cli.define("batch_size", _DEFAULT.batch_size, flag_values=FLAGS)
_DEVICE_STEPS = flags.DEFINE_integer(
    "device_steps", _DEFAULT.device_steps,
    "On-device train steps run on the exported model.", flag_values=FLAGS)


def config_from_flags() -> DemoConfig:
  """The demo's configuration given by the parsed flags."""
  return DemoConfig(
      out_dir=_OUT_DIR.value, corpus=_CORPUS.value, task=_TASK.value,
      encoder=_ENCODER.value, rounds=_ROUNDS.value,
      clients_per_round=_CLIENTS.value, max_local_steps=_LOCAL_STEPS.value,
      batch_size=_BATCH.value, device_steps=_DEVICE_STEPS.value)


def main() -> None:
  config = cli.build_config(config_from_flags)
  print(run_demo(config, progress=print).report)


def run() -> None:
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
