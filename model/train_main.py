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

from absl import app
from absl import flags

from model import evaluation
from model.cli import quiet_logging
from model.datasets.audio import decode_clips
from model.datasets.loaders import DATASETS, load_dataset
from model.datasets.pipeline import training_segments
from model.encoders import ENCODERS, POOLINGS, Encoder
from model.ssl_model import ModelSpec
from model.tasks import SSL_TASKS
from model.train import OPTIMIZERS, TrainConfig, train_centralized

_DATASET = flags.DEFINE_enum("dataset", "synthetic", list(DATASETS),
                             "Layout of --data_dir.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset folder (or CSV).",
                                required=True)
_TASK = flags.DEFINE_enum("task", "audio2vec_cbow", list(SSL_TASKS),
                          "Self-supervised task.")
_ENCODER = flags.DEFINE_enum("encoder", "small", list(ENCODERS),
                             "Encoder preset.")
_POOLING = flags.DEFINE_enum("pooling", "max", list(POOLINGS),
                             "Encoder pooling: global max, mean+std, both.")
_STEPS = flags.DEFINE_integer("steps", 300, "Optimizer steps.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Examples per step.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", "adam", list(OPTIMIZERS),
                               "Optimizer.")
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Learning rate.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of weights and batch order.")
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Run directory.",
                               required=True)
_EVALUATE = flags.DEFINE_bool("evaluate", True,
                              "Linear-probe the encoder after training.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quiet_logging()
  spec = ModelSpec(task=_TASK.value, encoder=dataclasses.replace(
      ENCODERS[_ENCODER.value], pooling=_POOLING.value),
                   seed=_SEED.value)
  config = TrainConfig(steps=_STEPS.value, batch_size=_BATCH.value,
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
  app.run(main)


if __name__ == "__main__":
  run()
