"""Launcher of the shared-vs-separate multimodal encoder study (FSSUAVL).

Usage:
  python -m benchmarks.multimodal_main --out_dir multimodal_output
      [--corpus full] [--encoder tiny] [--pooling max] [--rounds 20] [--mix 0.25,0.25,0.5]
      [--ablation_mixes 0.5/0.5/0,0/0/1] [--probe_folds 5]

Prints the report (``<out_dir>/report.md``; also ``results.csv``,
``tsne.png``, ``probes.png``, ``ablation.png``).
"""

from __future__ import annotations

from absl import flags

from benchmarks.multimodal import (MultimodalBenchmarkConfig,
                                   run_multimodal_benchmark)
from model import cli
from model.tasks import IMAGE_TASKS
from model.train import OPTIMIZERS
from tff_sim.algorithms import ALGORITHMS

FLAGS = cli.launcher_flags()

_DEFAULT = MultimodalBenchmarkConfig()

# Flags are named after the MultimodalBenchmarkConfig fields they set.
_CORPUS, _CORPUS_DIR = cli.define_corpus(_DEFAULT.corpus, flag_values=FLAGS)
_DIGIT_GROUPS = flags.DEFINE_integer(
    "digit_groups", _DEFAULT.digit_groups, "Natural image clients (digit "
    "groups).", flag_values=FLAGS)
_MAX_DIGITS = flags.DEFINE_integer("max_digits", _DEFAULT.max_digits,
                                   "Use the first N digits (0: all).",
                                   flag_values=FLAGS)
_TASK = cli.define("task", _DEFAULT.task,
                   help=f"SSL task; must accept images: {list(IMAGE_TASKS)}.",
                   flag_values=FLAGS)
_ENCODER = cli.define("encoder", _DEFAULT.encoder, flag_values=FLAGS)
_POOLING = cli.define("pooling", _DEFAULT.pooling, flag_values=FLAGS)
_ALGORITHM = flags.DEFINE_enum("algorithm", _DEFAULT.algorithm,
                               list(ALGORITHMS), "Federated algorithm.",
                               flag_values=FLAGS)
_MIX = flags.DEFINE_list(
    "mix", [f"{s:g}" for s in _DEFAULT.mix],
    "Client shares audio_only,image_only,both (FSSUAVL's client mix).",
    flag_values=FLAGS)
_NUM_CLIENTS = flags.DEFINE_integer("num_clients", _DEFAULT.num_clients,
                                    "Federated clients.", flag_values=FLAGS)
_ROUNDS = cli.define("rounds", _DEFAULT.rounds, flag_values=FLAGS)
_CLIENTS = cli.define("clients_per_round", _DEFAULT.clients_per_round,
                      flag_values=FLAGS)
_BATCH = cli.define("batch_size", _DEFAULT.batch_size, flag_values=FLAGS)
_MAX_STEPS = cli.define(
    "max_local_steps", _DEFAULT.max_local_steps,
    help="Cap on local steps per modality and round (0: none).",
    flag_values=FLAGS)
_CLIENT_LR = cli.define(
    "client_learning_rate", _DEFAULT.client_learning_rate,
    help="Client step size. Default: the client optimizer's (SGD 0.05; "
    "Adam 0.001 for --algorithm mimelite).", flag_values=FLAGS)
_CENTRAL_OPT = flags.DEFINE_enum("centralized_optimizer",
                                 _DEFAULT.centralized_optimizer,
                                 list(OPTIMIZERS), "Centralized optimizer.",
                                 flag_values=FLAGS)
_CENTRAL_LR = flags.DEFINE_float("centralized_learning_rate",
                                 _DEFAULT.centralized_learning_rate,
                                 "Centralized Adam step size.",
                                 flag_values=FLAGS)
_ABLATION = flags.DEFINE_list(
    "ablation_mixes",
    ["/".join(f"{s:g}" for s in m) for m in _DEFAULT.ablation_mixes],
    "Client mixes of the ablation, each audio_only/image_only/both.",
    flag_values=FLAGS)
_TSNE = flags.DEFINE_integer("tsne_points", _DEFAULT.tsne_points,
                             "Points per modality in the t-SNE map.",
                             flag_values=FLAGS)
_PROBE_FOLDS = flags.DEFINE_integer(
    "probe_folds", _DEFAULT.probe_folds, "Cross-validation folds of the "
    "linear probes (1: one 70/30 split).", flag_values=FLAGS)
_SEED = cli.define("seed", _DEFAULT.seed, flag_values=FLAGS)
_OUT_DIR = cli.define("out_dir", _DEFAULT.out_dir, flag_values=FLAGS)


def _floats(values: list[str], flag: str) -> tuple[float, ...]:
  try:
    return tuple(float(v) for v in values)
  except ValueError:
    raise cli.UserError(f"--{flag}: expected numbers, got {values}") from None


def config_from_flags() -> MultimodalBenchmarkConfig:
  """The study's configuration given by the parsed flags.

  Raises:
    cli.UserError: A flag value is invalid (e.g. a task that cannot train
      on images; the message names the tasks that can).
    ValueError: The configuration fails validation.
  """
  if _TASK.value not in IMAGE_TASKS:
    raise cli.UserError(f"--task={_TASK.value} cannot train on images; the "
                        f"multimodal study needs one of {list(IMAGE_TASKS)}")
  return MultimodalBenchmarkConfig(
      corpus=_CORPUS.value, corpus_dir=_CORPUS_DIR.value,
      digit_groups=_DIGIT_GROUPS.value, max_digits=_MAX_DIGITS.value,
      task=_TASK.value, encoder=_ENCODER.value, pooling=_POOLING.value,
      algorithm=_ALGORITHM.value,
      mix=_floats(_MIX.value, "mix"), num_clients=_NUM_CLIENTS.value,
      rounds=_ROUNDS.value, clients_per_round=_CLIENTS.value,
      batch_size=_BATCH.value, max_local_steps=_MAX_STEPS.value,
      client_learning_rate=_CLIENT_LR.value,
      centralized_optimizer=_CENTRAL_OPT.value,
      centralized_learning_rate=_CENTRAL_LR.value,
      ablation_mixes=tuple(_floats(m.split("/"), "ablation_mixes")
                           for m in _ABLATION.value),
      tsne_points=_TSNE.value, probe_folds=_PROBE_FOLDS.value,
      seed=_SEED.value, out_dir=_OUT_DIR.value)


def run() -> None:
  cli.run_study(config_from_flags, run_multimodal_benchmark, FLAGS)


if __name__ == "__main__":
  run()
