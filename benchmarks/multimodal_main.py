"""Launcher of the shared-vs-separate multimodal encoder study (FSSUAVL).

Usage:
  python -m benchmarks.multimodal_main --out_dir multimodal_output
      [--corpus full] [--encoder tiny] [--rounds 20] [--mix 0.25,0.25,0.5]
      [--ablation_mixes 0.5/0.5/0,0/0/1]

Prints the report (``<out_dir>/report.md``; also ``results.csv``,
``tsne.png``, ``probes.png``, ``ablation.png``).
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

from benchmarks.multimodal import (MultimodalBenchmarkConfig,
                                   run_multimodal_benchmark)
from model.cli import quiet_logging
from model.datasets import synthetic
from model.encoders import ENCODERS
from model.tasks import IMAGE_TASKS, SSL_TASKS
from tff_sim.algorithms import ALGORITHMS

_DEFAULT = MultimodalBenchmarkConfig()

# Flags are named after the MultimodalBenchmarkConfig fields they set.
_CORPUS = flags.DEFINE_enum("corpus", _DEFAULT.corpus,
                            list(synthetic.CORPUS_PRESETS), "Audio corpus.")
_CORPUS_DIR = flags.DEFINE_string(
    "corpus_dir", None, "Corpus directory (default <out_dir>/corpus).")
_DIGIT_GROUPS = flags.DEFINE_integer(
    "digit_groups", _DEFAULT.digit_groups, "Natural image clients (digit "
    "groups).")
_MAX_DIGITS = flags.DEFINE_integer("max_digits", _DEFAULT.max_digits,
                                   "Use the first N digits (0: all).")
_TASK = flags.DEFINE_enum("task", _DEFAULT.task, list(SSL_TASKS),
                          f"SSL task; must accept images: {list(IMAGE_TASKS)}.")
_ENCODER = flags.DEFINE_enum("encoder", _DEFAULT.encoder, list(ENCODERS),
                             "Encoder preset.")
_ALGORITHM = flags.DEFINE_enum("algorithm", _DEFAULT.algorithm,
                               list(ALGORITHMS), "Federated algorithm.")
_MIX = flags.DEFINE_list(
    "mix", [f"{s:g}" for s in _DEFAULT.mix],
    "Client shares audio_only,image_only,both (FSSUAVL's client mix).")
_NUM_CLIENTS = flags.DEFINE_integer("num_clients", _DEFAULT.num_clients,
                                    "Federated clients.")
_ROUNDS = flags.DEFINE_integer("rounds", _DEFAULT.rounds, "Federated rounds.")
_CLIENTS = flags.DEFINE_integer("clients_per_round", _DEFAULT.clients_per_round,
                                "Clients per round.")
_BATCH = flags.DEFINE_integer("batch_size", _DEFAULT.batch_size, "Batch size.")
_MAX_STEPS = flags.DEFINE_integer(
    "max_local_steps", _DEFAULT.max_local_steps,
    "Cap on local steps per modality and round (0: none).")
_CLIENT_LR = flags.DEFINE_float("client_learning_rate",
                                _DEFAULT.client_learning_rate,
                                "Client SGD step size.")
_CENTRAL_LR = flags.DEFINE_float("centralized_learning_rate",
                                 _DEFAULT.centralized_learning_rate,
                                 "Centralized Adam step size.")
_ABLATION = flags.DEFINE_list(
    "ablation_mixes",
    ["/".join(f"{s:g}" for s in m) for m in _DEFAULT.ablation_mixes],
    "Client mixes of the ablation, each audio_only/image_only/both.")
_TSNE = flags.DEFINE_integer("tsne_points", _DEFAULT.tsne_points,
                             "Points per modality in the t-SNE map.")
_SEED = flags.DEFINE_integer("seed", _DEFAULT.seed, "Seed.")
_OUT_DIR = flags.DEFINE_string("out_dir", _DEFAULT.out_dir, "Output directory.")


def _floats(values: list[str], flag: str) -> tuple[float, ...]:
  try:
    return tuple(float(v) for v in values)
  except ValueError:
    raise app.UsageError(f"--{flag}: expected numbers, got {values}") from None


def config_from_flags() -> MultimodalBenchmarkConfig:
  """The study's configuration given by the parsed flags.

  Raises:
    app.UsageError: A flag value is invalid (e.g. a task that cannot train
      on images; the message names the tasks that can).
  """
  if _TASK.value not in IMAGE_TASKS:
    raise app.UsageError(f"--task={_TASK.value} cannot train on images; the "
                         f"multimodal study needs one of {list(IMAGE_TASKS)}")
  try:
    return MultimodalBenchmarkConfig(
        corpus=_CORPUS.value, corpus_dir=_CORPUS_DIR.value,
        digit_groups=_DIGIT_GROUPS.value, max_digits=_MAX_DIGITS.value,
        task=_TASK.value, encoder=_ENCODER.value, algorithm=_ALGORITHM.value,
        mix=_floats(_MIX.value, "mix"), num_clients=_NUM_CLIENTS.value,
        rounds=_ROUNDS.value, clients_per_round=_CLIENTS.value,
        batch_size=_BATCH.value, max_local_steps=_MAX_STEPS.value,
        client_learning_rate=_CLIENT_LR.value,
        centralized_learning_rate=_CENTRAL_LR.value,
        ablation_mixes=tuple(_floats(m.split("/"), "ablation_mixes")
                             for m in _ABLATION.value),
        tsne_points=_TSNE.value, seed=_SEED.value, out_dir=_OUT_DIR.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quiet_logging()
  config = config_from_flags()
  run_multimodal_benchmark(config)
  with open(os.path.join(config.out_dir, "report.md")) as f:
    print(f.read())


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
