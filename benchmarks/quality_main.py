"""Launcher of the representation-quality benchmark (Tagliasacchi et al. 2020, "Pre-training audio representations with self-supervision").

Usage:
  python -m benchmarks.quality_main --out_dir quality_output [--corpus full]
      [--encoder small] [--tasks triplet,nt_xent] [--steps 1000]

Rerunning the same command reuses the corpus and every finished SSL run (a
larger --steps resumes them); the probes, supervised baselines and fine-tuning
are recomputed. Prints the report's tables.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

from benchmarks.quality import QualityConfig, run_quality_benchmark
from benchmarks.quality_seeds import run_quality_seeds
from model.datasets import synthetic
from model.encoders import ENCODERS, POOLINGS
from model.tasks import SSL_TASKS

_DEFAULT = QualityConfig()

# Flags are named after the QualityConfig fields they set.
_CORPUS = flags.DEFINE_enum("corpus", _DEFAULT.corpus,
                            list(synthetic.CORPUS_PRESETS),
                            "Built-in corpus size.")
_CORPUS_DIR = flags.DEFINE_string(
    "corpus_dir", None, "Corpus directory (default <out_dir>/corpus).")
_ENCODER = flags.DEFINE_enum("encoder", _DEFAULT.encoder, list(ENCODERS),
                             "Encoder preset of every row.")
_POOLING = flags.DEFINE_enum("pooling", _DEFAULT.pooling, list(POOLINGS),
                             "Encoder pooling: global max, mean+std, both.")
_TASKS = flags.DEFINE_list("tasks", list(_DEFAULT.tasks),
                           f"SSL tasks, of {', '.join(SSL_TASKS)}.")
_DOWNSTREAM = flags.DEFINE_list(
    "downstream_tasks", [], "Label columns to probe (default: every one that "
    "can be split).")
_STEPS = flags.DEFINE_integer("steps", _DEFAULT.steps,
                              "SSL training steps per task.")
_BATCH = flags.DEFINE_integer("batch_size", _DEFAULT.batch_size,
                              "SSL examples per step.")
_LR = flags.DEFINE_float("learning_rate", _DEFAULT.learning_rate,
                         "SSL learning rate.")
_HOP = flags.DEFINE_float("segment_hop", _DEFAULT.segment_hop,
                          "Hop between SSL training segments, in patches.")
_MIN_CLIP = flags.DEFINE_float(
    "min_clip_fraction", _DEFAULT.min_clip_fraction,
    "Shortest SSL training clip, as a fraction of an example (shorter clips "
    "are skipped, longer ones shorter than an example zero-padded).")
_SUPERVISED_STEPS = flags.DEFINE_integer(
    "supervised_steps", _DEFAULT.supervised_steps,
    "Steps of each supervised baseline and fine-tuning run.")
_BLOCKS = flags.DEFINE_list(
    "fine_tune_blocks", [str(k) for k in _DEFAULT.fine_tune_blocks],
    "Top conv blocks unfrozen when fine-tuning the best SSL encoder.")
_SEED = flags.DEFINE_integer("seed", _DEFAULT.seed,
                             "Seed of splits, weights and batch order.")
_OUT_DIR = flags.DEFINE_string("out_dir", _DEFAULT.out_dir,
                               "Output directory.")
_SEEDS = flags.DEFINE_list(
    "seeds", [], "Several seeds: one run per seed in <out_dir>/seed_<s> and "
    "the table as mean ± std (report_seeds.md, seeds.csv, quality_seeds.png); "
    "replaces --seed.")


def config_from_flags() -> QualityConfig:
  """The benchmark configuration given by the parsed flags."""
  return QualityConfig(
      corpus=_CORPUS.value, corpus_dir=_CORPUS_DIR.value,
      encoder=_ENCODER.value, pooling=_POOLING.value,
      tasks=tuple(_TASKS.value),
      downstream_tasks=tuple(_DOWNSTREAM.value), steps=_STEPS.value,
      batch_size=_BATCH.value, learning_rate=_LR.value,
      segment_hop=_HOP.value, min_clip_fraction=_MIN_CLIP.value,
      supervised_steps=_SUPERVISED_STEPS.value,
      fine_tune_blocks=tuple(int(k) for k in _BLOCKS.value),
      seed=_SEED.value, out_dir=_OUT_DIR.value)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = config_from_flags()
  if _SEEDS.value:
    try:
      seeds = [int(seed) for seed in _SEEDS.value]
    except ValueError as error:
      raise app.UsageError(f"--seeds must be integers, got "
                           f"{_SEEDS.value}") from error
    run_quality_seeds(config, seeds)
    report = "report_seeds.md"
  else:
    run_quality_benchmark(config)
    report = "report.md"
  with open(os.path.join(config.out_dir, report)) as f:
    print(f.read())


def run() -> None:
  app.run(main)


if __name__ == "__main__":
  run()
