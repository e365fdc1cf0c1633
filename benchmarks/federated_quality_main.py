"""Launcher of the federated-vs-centralized quality benchmark.

Usage:
  python -m benchmarks.federated_quality_main --out_dir fedq_output
      [--corpus full] [--encoder small] [--rounds 30]
      [--algorithms fedavg,fedadam,fedyogi] [--mixes 0,0.5,1]
      [--sgd_server_learning_rates 1,3,10]
      [--adaptive_server_learning_rates 0.01,0.03,0.1]
      [--centralized_sgd_learning_rates 0.015,0.05,0.15]
      [--centralized_adam_learning_rates 0.001,0.003,0.01]

Rerunning the same command reuses the corpus and every finished run (more
--rounds resumes them); the probes are recomputed. Prints the report.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

from benchmarks.federated_quality import (PAIRED_OPTIMIZER,
                                          FederatedQualityConfig,
                                          run_federated_quality_benchmark)
from model.datasets import synthetic
from model.encoders import ENCODERS
from model.tasks import SSL_TASKS

_DEFAULT = FederatedQualityConfig()

# Flags are named after the FederatedQualityConfig fields they set.
_CORPUS = flags.DEFINE_enum("corpus", _DEFAULT.corpus,
                            list(synthetic.CORPUS_PRESETS), "Built-in corpus.")
_CORPUS_DIR = flags.DEFINE_string(
    "corpus_dir", None, "Corpus directory (default <out_dir>/corpus).")
_TASK = flags.DEFINE_enum("task", _DEFAULT.task, list(SSL_TASKS),
                          "SSL task of every run.")
_ENCODER = flags.DEFINE_enum("encoder", _DEFAULT.encoder, list(ENCODERS),
                             "Encoder preset of every run.")
_ALGORITHMS = flags.DEFINE_list(
    "algorithms", list(_DEFAULT.algorithms),
    f"Federated algorithms, of {', '.join(PAIRED_OPTIMIZER)}.")
_ROUNDS = flags.DEFINE_integer("rounds", _DEFAULT.rounds, "Federated rounds.")
_CLIENTS = flags.DEFINE_integer("clients_per_round", _DEFAULT.clients_per_round,
                                "Clients per round.")
_BATCH = flags.DEFINE_integer("batch_size", _DEFAULT.batch_size,
                              "Client and centralized batch size.")
_MAX_STEPS = flags.DEFINE_integer("max_local_steps", _DEFAULT.max_local_steps,
                                  "Cap on local steps per round (0: none).")
_CLIENT_LR = flags.DEFINE_float("client_learning_rate",
                                _DEFAULT.client_learning_rate,
                                "Client SGD step size.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", _DEFAULT.eval_every,
                                   "Rounds between federated probes.")
_SGD_SERVER_LRS = flags.DEFINE_list(
    "sgd_server_learning_rates",
    [f"{lr:g}" for lr in _DEFAULT.sgd_server_learning_rates],
    "FedAvg server learning-rate grid.")
_ADAPTIVE_SERVER_LRS = flags.DEFINE_list(
    "adaptive_server_learning_rates",
    [f"{lr:g}" for lr in _DEFAULT.adaptive_server_learning_rates],
    "FedAdam / FedYogi server learning-rate grid.")
_CENTRAL_SGD_LRS = flags.DEFINE_list(
    "centralized_sgd_learning_rates",
    [f"{lr:g}" for lr in _DEFAULT.centralized_sgd_learning_rates],
    "Centralized SGD learning-rate grid (same size as the server grids).")
_CENTRAL_ADAM_LRS = flags.DEFINE_list(
    "centralized_adam_learning_rates",
    [f"{lr:g}" for lr in _DEFAULT.centralized_adam_learning_rates],
    "Centralized Adam learning-rate grid (same size as the server grids).")
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction", _DEFAULT.validation_fraction,
    "Fraction of each probe's train split held out to pick learning rates.")
_MIXES = flags.DEFINE_list(
    "mixes", [], "mixed-partition knobs p (0 IID .. 1 natural), one extra "
    "FedAvg run each.")
_WORKERS = flags.DEFINE_integer("num_workers", _DEFAULT.num_workers,
                                "TFF worker processes per federated run.")
_SEED = flags.DEFINE_integer("seed", _DEFAULT.seed, "Seed.")
_OUT_DIR = flags.DEFINE_string("out_dir", _DEFAULT.out_dir, "Output directory.")


def _floats(values: list[str]) -> tuple[float, ...]:
  return tuple(float(v) for v in values)


def config_from_flags() -> FederatedQualityConfig:
  """The benchmark configuration given by the parsed flags."""
  return FederatedQualityConfig(
      corpus=_CORPUS.value, corpus_dir=_CORPUS_DIR.value, task=_TASK.value,
      encoder=_ENCODER.value, algorithms=tuple(_ALGORITHMS.value),
      rounds=_ROUNDS.value, clients_per_round=_CLIENTS.value,
      batch_size=_BATCH.value, max_local_steps=_MAX_STEPS.value,
      client_learning_rate=_CLIENT_LR.value, eval_every=_EVAL_EVERY.value,
      sgd_server_learning_rates=_floats(_SGD_SERVER_LRS.value),
      adaptive_server_learning_rates=_floats(_ADAPTIVE_SERVER_LRS.value),
      centralized_sgd_learning_rates=_floats(_CENTRAL_SGD_LRS.value),
      centralized_adam_learning_rates=_floats(_CENTRAL_ADAM_LRS.value),
      validation_fraction=_VALIDATION_FRACTION.value,
      mixes=tuple(float(p) for p in _MIXES.value),
      num_workers=_WORKERS.value, seed=_SEED.value, out_dir=_OUT_DIR.value)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = config_from_flags()
  run_federated_quality_benchmark(config)
  with open(os.path.join(config.out_dir, "report.md")) as f:
    print(f.read())


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
