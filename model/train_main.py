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
import os

from absl import flags

from model import cli
from model import evaluation
from model.datasets.audio import decode_clips
from model.datasets.loaders import load_dataset
from model.datasets.pipeline import training_segments
from model.encoders import ENCODERS, Encoder
from model.ssl_model import ModelSpec
from model.train import OPTIMIZERS, TrainConfig, train_centralized

_TRAIN = TrainConfig()

_DATASET, _DATA_DIR = cli.define_dataset()
_TASK = cli.define("task", "audio2vec_cbow")
_ENCODER = cli.define("encoder", "small")
_POOLING = cli.define("pooling", ENCODERS["small"].pooling)
_STEPS = cli.define("steps", _TRAIN.steps)
_BATCH = cli.define("batch_size", _TRAIN.batch_size)
_OPTIMIZER = flags.DEFINE_enum("optimizer", _TRAIN.optimizer,
                               list(OPTIMIZERS), "Optimizer.")
_LR = cli.define("learning_rate", _TRAIN.learning_rate)
_SEED = cli.define("seed", _TRAIN.seed,
                   help="Seed of weights and batch order.")
_RUN_DIR = cli.define("run_dir", None, required=True)
_EVALUATE = flags.DEFINE_bool("evaluate", True,
                              "Linear-probe the encoder after training.")


def main() -> None:
  spec = cli.build_config(
      ModelSpec, task=_TASK.value, encoder=dataclasses.replace(
          ENCODERS[_ENCODER.value], pooling=_POOLING.value), seed=_SEED.value)
  config = cli.build_config(TrainConfig, steps=_STEPS.value,
                            batch_size=_BATCH.value,
                            optimizer=_OPTIMIZER.value,
                            learning_rate=_LR.value, seed=_SEED.value)
  table, waveforms, report = decode_clips(
      load_dataset(_DATASET.value, _DATA_DIR.value),
      sample_rate=spec.frontend.sample_rate, show_progress=True)
  print(report.summary())
  segments = training_segments(waveforms, spec)
  print(f"{len(segments)} training examples of "
        f"{segments.waveforms.shape[1] / spec.frontend.sample_rate:.2f} s "
        f"({segments.padded_clips} short clips padded, "
        f"{segments.skipped_clips} skipped)")
  result = train_centralized(
      spec, config, segments.waveforms, _RUN_DIR.value,
      dataset_info={"kind": _DATASET.value,
                    "path": os.path.abspath(_DATA_DIR.value),
                    "clips": len(table)})
  print(f"loss {result.losses[0][1]:.4f} -> {result.losses[-1][1]:.4f}; "
        f"model saved to {result.model_dir}")
  if _EVALUATE.value:
    rows = {
        "random init": evaluation.evaluate_encoder(
            Encoder(spec.encoder, seed=spec.seed), table, waveforms,
            spec.frontend),
        spec.task: evaluation.evaluate_encoder(
            result.model.encoder, table, waveforms, spec.frontend),
    }
    print(evaluation.format_markdown_table(rows))
    evaluation.write_csv(rows, os.path.join(_RUN_DIR.value, "probe.csv"))


def run() -> None:
  cli.run(main)


if __name__ == "__main__":
  run()
