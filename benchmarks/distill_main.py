"""Launcher of the distillation benchmark (Peng et al., "Shrinking Bigfoot", 2021).

Usage:
  python -m benchmarks.distill_main --out_dir distill_output --corpus demo \\
      --teacher_encoder large --teacher_steps 400 --student_encoder small
  python -m benchmarks.distill_main --teacher_dirs runs/large_triplet \\
      --student_encoder tiny --out_dir distill_tiny

Trains (or takes) the teacher, trains the student from scratch and by
distillation centrally and federated, exports the distilled student in
builtin mode with quantized embed models, and writes report.md,
results.csv and results.png to --out_dir. Rerunning reuses or resumes every
finished run. Prints the report.
"""

from __future__ import annotations

from absl import flags

from benchmarks.distill import DistillConfig, run_distill_benchmark
from export.conversion import QUANTIZATIONS
from model import cli
from tff_sim.algorithms import CLIENT_OPTIMIZERS

FLAGS = cli.launcher_flags()

_DEFAULT = DistillConfig()

# Flags are named after the DistillConfig fields they set.
_CORPUS, _CORPUS_DIR = cli.define_corpus(_DEFAULT.corpus, flag_values=FLAGS)
_TEACHER_DIRS = flags.DEFINE_list(
    "teacher_dirs", [], "Saved teachers (run or model directories); empty: "
    "train --teacher_encoder with --teacher_task.", flag_values=FLAGS)
_TEACHER_ENCODER = flags.DEFINE_enum("teacher_encoder",
                                     _DEFAULT.teacher_encoder,
                                     cli.SHARED_FLAGS["encoder"].choices(),
                                     "Preset of the trained teacher.",
                                     flag_values=FLAGS)
_TEACHER_TASK = flags.DEFINE_enum("teacher_task", _DEFAULT.teacher_task,
                                  cli.SHARED_FLAGS["task"].choices(),
                                  "SSL task of the trained teacher.",
                                  flag_values=FLAGS)
_TEACHER_STEPS = flags.DEFINE_integer("teacher_steps", _DEFAULT.teacher_steps,
                                      "Steps of the trained teacher.",
                                      flag_values=FLAGS)
_STUDENT_ENCODER = flags.DEFINE_enum("student_encoder",
                                     _DEFAULT.student_encoder,
                                     cli.SHARED_FLAGS["encoder"].choices(),
                                     "Preset of the student.",
                                     flag_values=FLAGS)
_STUDENT_TASK = flags.DEFINE_enum(
    "student_task", _DEFAULT.student_task, cli.SHARED_FLAGS["task"].choices(),
    "SSL task of the from-scratch student (and of the optional own loss).",
    flag_values=FLAGS)
_SSL_WEIGHT = flags.DEFINE_float(
    "distill_ssl_weight", _DEFAULT.distill_ssl_weight,
    "Weight of --student_task's loss added to the distillation loss.",
    flag_values=FLAGS)
_STEPS = cli.define("steps", _DEFAULT.steps,
                     help="Steps of the scratch and distilled students.",
                     flag_values=FLAGS)
_BATCH = cli.define("batch_size", _DEFAULT.batch_size,
                    help="Examples per centralized step.", flag_values=FLAGS)
_LR = cli.define("learning_rate", _DEFAULT.learning_rate,
                 help="Adam step size of the centralized runs.",
                 flag_values=FLAGS)
_ROUNDS = cli.define("rounds", _DEFAULT.rounds,
                     help="Federated distillation rounds.", flag_values=FLAGS)
_CLIENTS = cli.define("clients_per_round", _DEFAULT.clients_per_round,
                      flag_values=FLAGS)
_CLIENT_BATCH = flags.DEFINE_integer(
    "client_batch_size", _DEFAULT.client_batch_size,
    "Client batch (and batch of the exported train signature).",
    flag_values=FLAGS)
_LOCAL_STEPS = cli.define("max_local_steps", _DEFAULT.max_local_steps,
                          flag_values=FLAGS)
_CLIENT_OPT = flags.DEFINE_enum("client_optimizer", _DEFAULT.client_optimizer,
                                list(CLIENT_OPTIMIZERS), "Client optimizer.",
                                flag_values=FLAGS)
_CLIENT_LR = cli.define("client_learning_rate",
                        _DEFAULT.client_learning_rate,
                        help="Client step size.", flag_values=FLAGS)
_QUANTIZATIONS = flags.DEFINE_list(
    "quantizations", list(_DEFAULT.quantizations),
    f"Quantized embed models to export and probe, of {list(QUANTIZATIONS)}.",
    flag_values=FLAGS)
_VERIFY_STEPS = flags.DEFINE_integer(
    "verify_steps", _DEFAULT.verify_steps,
    "train steps run on the exported file and on TF.", flag_values=FLAGS)
_SEED = cli.define("seed", _DEFAULT.seed, flag_values=FLAGS)
_OUT_DIR = cli.define("out_dir", _DEFAULT.out_dir, flag_values=FLAGS)


def config_from_flags() -> DistillConfig:
  """The benchmark configuration given by the parsed flags."""
  return DistillConfig(
      corpus=_CORPUS.value, corpus_dir=_CORPUS_DIR.value,
      teacher_dirs=tuple(_TEACHER_DIRS.value),
      teacher_encoder=_TEACHER_ENCODER.value,
      teacher_task=_TEACHER_TASK.value, teacher_steps=_TEACHER_STEPS.value,
      student_encoder=_STUDENT_ENCODER.value,
      student_task=_STUDENT_TASK.value, distill_ssl_weight=_SSL_WEIGHT.value,
      steps=_STEPS.value, batch_size=_BATCH.value, learning_rate=_LR.value,
      rounds=_ROUNDS.value, clients_per_round=_CLIENTS.value,
      client_batch_size=_CLIENT_BATCH.value,
      max_local_steps=_LOCAL_STEPS.value,
      client_optimizer=_CLIENT_OPT.value,
      client_learning_rate=_CLIENT_LR.value,
      quantizations=tuple(_QUANTIZATIONS.value),
      verify_steps=_VERIFY_STEPS.value, seed=_SEED.value,
      out_dir=_OUT_DIR.value)


def run() -> None:
  cli.run_study(config_from_flags, run_distill_benchmark, FLAGS)


if __name__ == "__main__":
  run()
