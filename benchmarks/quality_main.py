"""Launcher of the representation-quality benchmark (Tagliasacchi et al. 2020, "Pre-training audio representations with self-supervision").

Usage:
  python -m benchmarks.quality_main --out_dir quality_output [--corpus full]
      [--encoder small] [--tasks triplet,nt_xent] [--steps 1000]

Rerunning the same command reuses the corpus and every finished SSL run (a
larger --steps resumes them); the probes, supervised baselines and fine-tuning
are recomputed. Prints the report's tables.
"""

from __future__ import annotations

from absl import flags

from benchmarks.quality import QualityConfig, run_quality_benchmark
from benchmarks.quality_seeds import run_quality_seeds
from model import cli
from model.errors import UserError
from model.tasks import SSL_TASKS

FLAGS = cli.launcher_flags()

_DEFAULT = QualityConfig()

# Flags are named after the QualityConfig fields they set.
_CORPUS, _CORPUS_DIR = cli.define_corpus(_DEFAULT.corpus, flag_values=FLAGS)
_ENCODER = cli.define("encoder", _DEFAULT.encoder,
                      help="Encoder preset of every row.", flag_values=FLAGS)
_POOLING = cli.define("pooling", _DEFAULT.pooling, flag_values=FLAGS)
_TASKS = flags.DEFINE_list("tasks", list(_DEFAULT.tasks),
                           f"SSL tasks, of {', '.join(SSL_TASKS)}.",
                           flag_values=FLAGS)
_DOWNSTREAM = flags.DEFINE_list(
    "downstream_tasks", [], "Label columns to probe (default: every one that "
    "can be split).", flag_values=FLAGS)
_STEPS = cli.define("steps", _DEFAULT.steps,
                     help="SSL training steps per task.", flag_values=FLAGS)
_BATCH = cli.define("batch_size", _DEFAULT.batch_size,
                    help="SSL examples per step.", flag_values=FLAGS)
_LR = cli.define("learning_rate", _DEFAULT.learning_rate,
                 help="SSL learning rate.", flag_values=FLAGS)
_HOP = cli.define("segment_hop", _DEFAULT.segment_hop, flag_values=FLAGS)
_MIN_CLIP = cli.define("min_clip_fraction", _DEFAULT.min_clip_fraction,
                       flag_values=FLAGS)
_SUPERVISED_STEPS = flags.DEFINE_integer(
    "supervised_steps", _DEFAULT.supervised_steps,
    "Steps of each supervised baseline and fine-tuning run.", flag_values=FLAGS)
_BLOCKS = flags.DEFINE_list(
    "fine_tune_blocks", [str(k) for k in _DEFAULT.fine_tune_blocks],
    "Top conv blocks unfrozen when fine-tuning the best SSL encoder.",
    flag_values=FLAGS)
_PROBE_FOLDS = flags.DEFINE_integer(
    "probe_folds", _DEFAULT.probe_folds, "Cross-validation folds of the "
    "linear probes (1: one 70/30 split; k > 1: every labelled clip tested "
    "once).", flag_values=FLAGS)
_SEED = cli.define("seed", _DEFAULT.seed,
                    help="Seed of splits, weights and batch order.",
                    flag_values=FLAGS)
_OUT_DIR = cli.define("out_dir", _DEFAULT.out_dir, flag_values=FLAGS)
_SEEDS = flags.DEFINE_list(
    "seeds", [], "Several seeds: one run per seed in <out_dir>/seed_<s> and "
    "the table as mean ± std (report_seeds.md, seeds.csv, quality_seeds.png); "
    "replaces --seed.", flag_values=FLAGS)


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
      probe_folds=_PROBE_FOLDS.value, seed=_SEED.value, out_dir=_OUT_DIR.value)


def main() -> None:
  config = cli.build_config(config_from_flags)
  if not _SEEDS.value:
    run_quality_benchmark(config)
    cli.print_report(config.out_dir)
    return
  try:
    seeds = [int(seed) for seed in _SEEDS.value]
  except ValueError as error:
    raise UserError(f"--seeds must be integers, got {_SEEDS.value}") from error
  if len(set(seeds)) < len(seeds):
    raise UserError(f"--seeds must be distinct, got {_SEEDS.value}")
  run_quality_seeds(config, seeds)
  cli.print_report(config.out_dir, "report_seeds.md")


def run() -> None:
  cli.run(main, FLAGS)


if __name__ == "__main__":
  run()
