"""Centralized self-supervised training on a dataset folder.

Usage:
  python -m model.train_main --dataset synthetic --data_dir /tmp/corpus \\
      --task audio2vec_cbow --encoder small --steps 2000 --run_dir runs/cbow

Rerunning the same command resumes from the last checkpoint (also with a
larger --steps). With --evaluate, the trained and a random-init encoder are
compared by linear probes on every label of the dataset.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from model import cli
from model.datasets.loaders import DatasetSource
from model.encoders import ENCODERS
from model.ssl_model import ModelSpec
from model.train import OPTIMIZERS, TrainConfig, run_training

FLAGS = cli.launcher_flags()

_TRAIN = TrainConfig()

_DATASET, _DATA_DIR = cli.define_dataset(flag_values=FLAGS)
_TASK = cli.define("task", "audio2vec_cbow", flag_values=FLAGS)
_ENCODER = cli.define("encoder", "small", flag_values=FLAGS)
_POOLING = cli.define("pooling", ENCODERS["small"].pooling, flag_values=FLAGS)
_STEPS = cli.define("steps", _TRAIN.steps, flag_values=FLAGS)
_BATCH = cli.define("batch_size", _TRAIN.batch_size, flag_values=FLAGS)
_OPTIMIZER = flags.DEFINE_enum("optimizer", _TRAIN.optimizer,
                               list(OPTIMIZERS), "Optimizer.",
                               flag_values=FLAGS)
_LR = cli.define("learning_rate", _TRAIN.learning_rate, flag_values=FLAGS)
_SEED = cli.define("seed", _TRAIN.seed,
                   help="Seed of weights and batch order.", flag_values=FLAGS)
_RUN_DIR = cli.define("run_dir", None, required=True, flag_values=FLAGS)
_EVALUATE = flags.DEFINE_bool("evaluate", True,
                              "Linear-probe the encoder after training.",
                              flag_values=FLAGS)


def main() -> None:
  spec = cli.build_config(
      ModelSpec, task=_TASK.value, encoder=dataclasses.replace(
          ENCODERS[_ENCODER.value], pooling=_POOLING.value), seed=_SEED.value)
  config = cli.build_config(TrainConfig, steps=_STEPS.value,
                            batch_size=_BATCH.value,
                            optimizer=_OPTIMIZER.value,
                            learning_rate=_LR.value, seed=_SEED.value)
  training = run_training(spec, config,
                          DatasetSource(_DATASET.value, _DATA_DIR.value),
                          _RUN_DIR.value, evaluate=_EVALUATE.value,
                          progress=print)
  print(training.report)


def run() -> None:
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
