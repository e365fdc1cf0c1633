"""Launcher of the federated-vs-centralized quality benchmark.

Usage:
  python -m benchmarks.federated_quality_main --out_dir fedq_output
      [--corpus full] [--encoder small] [--pooling max] [--rounds 30]
      [--algorithms fedavg,fedadam,fedyogi] [--mixes 0,0.5,1]
      [--sgd_server_learning_rates 1,3,10]
      [--adaptive_server_learning_rates 0.03,0.1,0.3]
      [--centralized_sgd_learning_rates 0.015,0.05,0.15]
      [--centralized_adam_learning_rates 0.001,0.003,0.01]
      [--client_learning_rates 0.05,0.15 | --local_steps_grid 5,1]
      [--clients_per_round_grid 8,2]
      [--adaptive_server_momenta 0.9,0]
      [--centralized_batch_sizes 8,32] [--num_seeds 2]
      [--probe_folds 5] [--validation_folds 3] [--combine_seeds]

Rerunning the same command reuses the corpus and every finished run (more
--rounds resumes them); the probes are recomputed. Seeds may also run as
separate invocations (``--seed s --num_seeds 1 --out_dir D/seed_<s>``, e.g.
one per machine); ``--combine_seeds --seed 0 --num_seeds N --out_dir D`` with
the same study flags then writes their summary without training. Prints the
report.
"""

from __future__ import annotations

from absl import flags

from benchmarks.federated_quality import (PAIRED_OPTIMIZER,
                                          FederatedQualityConfig,
                                          combine_federated_quality_seeds,
                                          run_federated_quality_seeds)
from model import cli

FLAGS = cli.launcher_flags()

_DEFAULT = FederatedQualityConfig()

# Flags are named after the FederatedQualityConfig fields they set.
_CORPUS, _CORPUS_DIR = cli.define_corpus(_DEFAULT.corpus, flag_values=FLAGS)
_TASK = cli.define("task", _DEFAULT.task, help="SSL task of every run.",
                   flag_values=FLAGS)
_ENCODER = cli.define("encoder", _DEFAULT.encoder,
                      help="Encoder preset of every run.", flag_values=FLAGS)
_POOLING = cli.define("pooling", _DEFAULT.pooling, flag_values=FLAGS)
_ALGORITHMS = flags.DEFINE_list(
    "algorithms", list(_DEFAULT.algorithms),
    f"Federated algorithms, of {', '.join(PAIRED_OPTIMIZER)}.",
    flag_values=FLAGS)
_LOOP = cli.define_federated_loop(_DEFAULT, flag_values=FLAGS)


def _define_grid(name: str, help_text: str) -> flags.FlagHolder:
  """A learning-rate grid flag, defaulting to the config field ``name``."""
  return flags.DEFINE_list(
      name, [f"{lr:g}" for lr in getattr(_DEFAULT, name)], help_text,
      flag_values=FLAGS)


_SGD_SERVER_LRS = _define_grid("sgd_server_learning_rates",
                               "FedAvg server learning-rate grid.")
_ADAPTIVE_SERVER_LRS = _define_grid(
    "adaptive_server_learning_rates",
    "FedAdam / FedYogi server learning-rate grid.")
_CENTRAL_SGD_LRS = _define_grid(
    "centralized_sgd_learning_rates",
    "Centralized SGD learning-rate grid (same size as the server grids).")
_CENTRAL_ADAM_LRS = _define_grid(
    "centralized_adam_learning_rates",
    "Centralized Adam learning-rate grid (same size as the server grids).")
_CLIENT_LRS = flags.DEFINE_list(
    "client_learning_rates", [], "Client SGD learning rates tried by "
    "FedAvg, FedAdam and FedYogi (empty: --client_learning_rate).",
    flag_values=FLAGS)
_MIME_LRS = flags.DEFINE_list(
    "mime_learning_rates", [], "Client Adam learning rates tried by "
    "mimelite (server lr 1; empty: --centralized_adam_learning_rates).",
    flag_values=FLAGS)
_MOMENTA = flags.DEFINE_list(
    "adaptive_server_momenta", [], "Server momenta (beta_1) tried by FedAdam "
    "and FedYogi (empty: 0.9).", flag_values=FLAGS)
_LOCAL_STEPS_GRID = flags.DEFINE_list(
    "local_steps_grid", [], "Local steps per round tried by every federated "
    "algorithm, rounds scaled for equal examples (empty: --max_local_steps).",
    flag_values=FLAGS)
_CLIENTS_GRID = flags.DEFINE_list(
    "clients_per_round_grid", [], "Clients per round tried by every "
    "federated algorithm, rounds scaled for equal examples (empty: "
    "--clients_per_round).", flag_values=FLAGS)
_CENTRAL_BATCH_SIZES = flags.DEFINE_list(
    "centralized_batch_sizes", [], "Batch sizes tried by every centralized "
    "optimizer at equal examples (empty: --batch_size).", flag_values=FLAGS)
_NUM_SEEDS = flags.DEFINE_integer(
    "num_seeds", _DEFAULT.num_seeds, "Seeds --seed, --seed + 1, ...: the "
    "whole benchmark per seed, mean ± std of the pairings.", lower_bound=1,
    flag_values=FLAGS)
_PROBE_FOLDS = flags.DEFINE_integer(
    "probe_folds", _DEFAULT.probe_folds, "Test folds of every probe (each "
    "scored with the candidate chosen on its train part); 1: one split.",
    lower_bound=1, flag_values=FLAGS)
_VALIDATION_FOLDS = flags.DEFINE_integer(
    "validation_folds", _DEFAULT.validation_folds, "Validation folds inside "
    "each test fold's train part, on which learning rates are chosen; 1: one "
    "split of --validation_fraction (with --probe_folds 1: the single-split "
    "choice of earlier reports).", lower_bound=1, flag_values=FLAGS)
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction", _DEFAULT.validation_fraction,
    "With --validation_folds 1: fraction of each probe's train part held out "
    "to pick learning rates.", flag_values=FLAGS)
_MIXES = flags.DEFINE_list(
    "mixes", [], "mixed-partition knobs p (0 IID .. 1 natural), one extra "
    "FedAvg run each.", flag_values=FLAGS)
_COMBINE_SEEDS = flags.DEFINE_bool(
    "combine_seeds", False, "Train nothing: summarize the finished "
    "<out_dir>/seed_<s> benchmarks of seeds --seed .. --seed + --num_seeds - "
    "1, run as separate invocations with these study flags (checked against "
    "each seed's config.json).", flag_values=FLAGS)
_WORKERS = cli.define("num_workers", _DEFAULT.num_workers, flag_values=FLAGS)
_SEED = cli.define("seed", _DEFAULT.seed, flag_values=FLAGS)
_OUT_DIR = cli.define("out_dir", _DEFAULT.out_dir, flag_values=FLAGS)


def _floats(values: list[str]) -> tuple[float, ...]:
  return tuple(float(v) for v in values)


def config_from_flags() -> FederatedQualityConfig:
  """The benchmark configuration given by the parsed flags."""
  return FederatedQualityConfig(
      corpus=_CORPUS.value, corpus_dir=_CORPUS_DIR.value, task=_TASK.value,
      encoder=_ENCODER.value, pooling=_POOLING.value,
      algorithms=tuple(_ALGORITHMS.value),
      **_LOOP(),
      sgd_server_learning_rates=_floats(_SGD_SERVER_LRS.value),
      adaptive_server_learning_rates=_floats(_ADAPTIVE_SERVER_LRS.value),
      centralized_sgd_learning_rates=_floats(_CENTRAL_SGD_LRS.value),
      centralized_adam_learning_rates=_floats(_CENTRAL_ADAM_LRS.value),
      client_learning_rates=_floats(_CLIENT_LRS.value),
      mime_learning_rates=_floats(_MIME_LRS.value),
      adaptive_server_momenta=_floats(_MOMENTA.value),
      local_steps_grid=tuple(int(k) for k in _LOCAL_STEPS_GRID.value),
      clients_per_round_grid=tuple(int(c) for c in _CLIENTS_GRID.value),
      centralized_batch_sizes=tuple(int(b)
                                    for b in _CENTRAL_BATCH_SIZES.value),
      probe_folds=_PROBE_FOLDS.value,
      validation_folds=_VALIDATION_FOLDS.value,
      validation_fraction=_VALIDATION_FRACTION.value,
      mixes=tuple(float(p) for p in _MIXES.value),
      num_workers=_WORKERS.value, seed=_SEED.value,
      num_seeds=_NUM_SEEDS.value, out_dir=_OUT_DIR.value)


def _run_or_combine(config: FederatedQualityConfig) -> None:
  if not _COMBINE_SEEDS.value:
    run_federated_quality_seeds(config)
  elif config.num_seeds < 2:
    raise cli.UserError(f"--combine_seeds needs --num_seeds >= 2, got "
                        f"{config.num_seeds}")
  else:
    combine_federated_quality_seeds(config)


def run() -> None:
  cli.run_study(config_from_flags, _run_or_combine, FLAGS)


if __name__ == "__main__":
  run()
