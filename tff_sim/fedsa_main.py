"""Launcher of the FedSA benchmark (Xie et al., "Federated Selective Aggregation for Knowledge Amalgamation", 2022).

Usage:
  python -m tff_sim.fedsa_main --out_dir fedsa_output --corpus demo \\
      --teacher_tasks triplet,temporal_gap,audio2vec_cbow \\
      --teacher_encoder small --student_encoder tiny \\
      --downstream_task keyword --rounds 10 --top_k 2

Trains one teacher per --teacher_tasks entry on its own speakers, then a
student for --downstream_task by FedSA (saliency-based teacher selection,
probability-weighted aggregation) and by the baselines, and writes
report.md, results.csv, selection.csv and results.png to --out_dir. Reruns
reuse the trained teachers. Prints the report.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

from model.cli import quiet_logging
from model.datasets import synthetic
from model.encoders import ENCODERS
from model.tasks import SSL_TASKS
from tff_sim.fedsa import (SALIENCY_METHODS, FedSABenchmarkConfig,
                           FedSAConfig, run_fedsa_benchmark)

_DEFAULT = FedSABenchmarkConfig()
_LOOP = _DEFAULT.fedsa

# Flags are named after the FedSABenchmarkConfig and FedSAConfig fields.
_CORPUS = flags.DEFINE_enum("corpus", _DEFAULT.corpus,
                            list(synthetic.CORPUS_PRESETS),
                            "Built-in corpus size.")
_CORPUS_DIR = flags.DEFINE_string(
    "corpus_dir", None, "Corpus directory (default <out_dir>/corpus).")
_TEACHER_TASKS = flags.DEFINE_list(
    "teacher_tasks", list(_DEFAULT.teacher_tasks),
    f"One SSL task per teacher, of {', '.join(SSL_TASKS)}.")
_TEACHER_ENCODER = flags.DEFINE_enum("teacher_encoder",
                                     _DEFAULT.teacher_encoder, list(ENCODERS),
                                     "Preset of every teacher.")
_TEACHER_STEPS = flags.DEFINE_integer("teacher_steps", _DEFAULT.teacher_steps,
                                      "Training steps of every teacher.")
_STUDENT_ENCODER = flags.DEFINE_enum("student_encoder",
                                     _DEFAULT.student_encoder, list(ENCODERS),
                                     "Preset of the student.")
_DOWNSTREAM = flags.DEFINE_string("downstream_task", _DEFAULT.downstream_task,
                                  "Label column of the new task.")
_PROBE_CLIPS = flags.DEFINE_integer(
    "probe_clips_per_class", _DEFAULT.probe_clips_per_class,
    "Labelled probe-set clips per class.")
_SUPERVISED_STEPS = flags.DEFINE_integer(
    "supervised_steps", _DEFAULT.supervised_steps,
    "Steps of the supervised from-scratch baseline.")
_FEDAVG_TASK = flags.DEFINE_enum("fedavg_task", _DEFAULT.fedavg_task,
                                 list(SSL_TASKS),
                                 "SSL task of the FedAvg baseline.")
_ROUNDS = flags.DEFINE_integer("rounds", _LOOP.rounds, "Rounds.")
_PERIOD = flags.DEFINE_integer("selection_period", _LOOP.selection_period,
                               "Rounds between teacher selections.")
_TOP_K = flags.DEFINE_integer("top_k", _LOOP.top_k,
                              "Teachers sampled per period.")
_TEMPERATURE = flags.DEFINE_float("temperature", _LOOP.temperature,
                                  "Softmax temperature of the selection.")
_SALIENCY = flags.DEFINE_enum("saliency", _LOOP.saliency,
                              list(SALIENCY_METHODS), "Saliency method.")
_LOCAL_STEPS = flags.DEFINE_integer("local_steps", _LOOP.local_steps,
                                    "Local steps per selected client.")
_BATCH = flags.DEFINE_integer("batch_size", _LOOP.batch_size,
                              "Batch size of every training run.")
_LR = flags.DEFINE_float("learning_rate", _LOOP.learning_rate,
                         "Adam step size of every training run.")
_SEED = flags.DEFINE_integer("seed", _LOOP.seed, "Seed.")
_OUT_DIR = flags.DEFINE_string("out_dir", _DEFAULT.out_dir,
                               "Output directory.")


def config_from_flags() -> FedSABenchmarkConfig:
  """The benchmark configuration given by the parsed flags."""
  return FedSABenchmarkConfig(
      corpus=_CORPUS.value, corpus_dir=_CORPUS_DIR.value,
      teacher_tasks=tuple(_TEACHER_TASKS.value),
      teacher_encoder=_TEACHER_ENCODER.value,
      teacher_steps=_TEACHER_STEPS.value,
      student_encoder=_STUDENT_ENCODER.value,
      downstream_task=_DOWNSTREAM.value,
      probe_clips_per_class=_PROBE_CLIPS.value,
      supervised_steps=_SUPERVISED_STEPS.value,
      fedavg_task=_FEDAVG_TASK.value,
      fedsa=FedSAConfig(
          rounds=_ROUNDS.value, selection_period=_PERIOD.value,
          top_k=_TOP_K.value, temperature=_TEMPERATURE.value,
          saliency=_SALIENCY.value, local_steps=_LOCAL_STEPS.value,
          batch_size=_BATCH.value, learning_rate=_LR.value, seed=_SEED.value),
      out_dir=_OUT_DIR.value)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quiet_logging()
  try:
    config = config_from_flags()
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  run_fedsa_benchmark(config)
  with open(os.path.join(config.out_dir, "report.md")) as f:
    print(f.read())


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
