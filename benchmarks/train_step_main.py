"""Launcher of the on-device train-step and embed benchmark.

Usage:
  python -m benchmarks.train_step_main --out_dir train_step_output \\
      [--presets small,large] [--tasks temporal_gap,nt_xent] \\
      [--batch_sizes 8,32] [--threads 1] [--variants ...] \\
      [--quantizations float32,int8] [--embed_inputs waveform,log_mel] \\
      [--steps 10]

Prints the Markdown tables; ``train_step.csv``, ``train_step.md`` and
``train_step.png`` go to --out_dir. TF's thread pools are fixed per process:
run once per thread count.
"""

from __future__ import annotations

from absl import flags

from benchmarks import train_step
from model import cli
from model.encoders import ENCODERS
from model.tasks import SSL_TASKS

FLAGS = cli.launcher_flags()

_DEFAULT = train_step.TrainStepConfig()

_OUT_DIR = cli.define("out_dir", None, required=True, flag_values=FLAGS)
_PRESETS = flags.DEFINE_list("presets", list(_DEFAULT.presets),
                             f"Encoder presets, of {', '.join(ENCODERS)}.",
                             flag_values=FLAGS)
_TASKS = flags.DEFINE_list("tasks", list(_DEFAULT.tasks),
                           f"SSL tasks, of {', '.join(SSL_TASKS)}.",
                           flag_values=FLAGS)
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["32"], "train batches.",
                                 flag_values=FLAGS)
_THREADS = flags.DEFINE_integer("threads", 1, "Threads (runtimes and TF).",
                                lower_bound=1, flag_values=FLAGS)
_VARIANTS = flags.DEFINE_list(
    "variants", list(_DEFAULT.variants),
    f"Train variants, of: {', '.join(train_step.TRAIN_VARIANTS)}.",
    flag_values=FLAGS)
_QUANTIZATIONS = flags.DEFINE_list(
    "quantizations", list(_DEFAULT.quantizations),
    "Embed variants (empty: no embed rows).", flag_values=FLAGS)
_EMBED_INPUTS = flags.DEFINE_list(
    "embed_inputs", list(_DEFAULT.embed_inputs),
    f"Inputs of the embed rows, of: {', '.join(train_step.EMBED_INPUTS)} "
    "(log_mel: the encoder alone; with waveform, a table of the front-end's "
    "share of each call).", flag_values=FLAGS)
_STEPS = cli.define("steps", _DEFAULT.steps, help="Timed calls per variant.",
                    flag_values=FLAGS)
_WARMUP = flags.DEFINE_integer("warmup", _DEFAULT.warmup,
                               "Untimed calls per variant.", lower_bound=0,
                               flag_values=FLAGS)
_EMBED_BURST = flags.DEFINE_integer(
    "embed_burst", _DEFAULT.embed_burst,
    "Consecutive embed calls per variant and round (1: cold caches after "
    "the other models; more: an embed loop's steady state).", lower_bound=1,
    flag_values=FLAGS)


def main() -> None:
  if unknown := [p for p in _PRESETS.value if p not in ENCODERS]:
    raise cli.UserError(f"--presets: unknown {unknown}; choose from "
                        f"{list(ENCODERS)}")
  if unknown := [t for t in _TASKS.value if t not in SSL_TASKS]:
    raise cli.UserError(f"--tasks: unknown {unknown}; choose from "
                        f"{list(SSL_TASKS)}")
  # TF's thread pools must be sized before TensorFlow runs anything.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
  tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
  config = cli.build_config(lambda: train_step.TrainStepConfig(
      presets=tuple(_PRESETS.value), tasks=tuple(_TASKS.value),
      batch_sizes=tuple(int(b) for b in _BATCH_SIZES.value),
      threads=_THREADS.value, variants=tuple(_VARIANTS.value),
      quantizations=tuple(_QUANTIZATIONS.value),
      embed_inputs=tuple(_EMBED_INPUTS.value), steps=_STEPS.value,
      warmup=_WARMUP.value, embed_burst=_EMBED_BURST.value))
  cli.quiet_logging()
  print(train_step.run_benchmark(
      config, _OUT_DIR.value,
      progress=lambda line: print(line, flush=True)))


def run() -> None:
  # quiet_logging imports TensorFlow: only after its thread pools are sized.
  cli.run(main, FLAGS, quiet=False)


if __name__ == "__main__":
  run()
