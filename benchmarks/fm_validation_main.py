"""Launcher of the feature-matching validation sweep.

See :mod:`benchmarks.fm_validation`.

Usage:
  python -m benchmarks.fm_validation_main --out_dir fm_output \\
      [--variants simsiam,simsiam:predictor_hidden_dim=64] [--seeds 0,1,2]

Rerunning the same command reuses the corpus and every finished run. Prints
the report.
"""

from __future__ import annotations

from absl import flags

from benchmarks.fm_validation import SweepConfig, run_fm_validation
from model import cli
from model.errors import UserError

FLAGS = cli.launcher_flags()

_DEFAULT = SweepConfig()

# Flags are named after the SweepConfig fields they set.
_CORPUS, _CORPUS_DIR = cli.define_corpus(_DEFAULT.corpus, flag_values=FLAGS)
_ENCODER = cli.define("encoder", _DEFAULT.encoder, flag_values=FLAGS)
_POOLING = cli.define("pooling", _DEFAULT.pooling, flag_values=FLAGS)
_VARIANTS = flags.DEFINE_list(
    "variants", list(_DEFAULT.variants),
    "task[:TaskConfig field=value...] (values may be fractions, 1/16).",
    flag_values=FLAGS)
_SEEDS = flags.DEFINE_list("seeds", [str(s) for s in _DEFAULT.seeds],
                           "Seeds of weights, batch order and splits.",
                           flag_values=FLAGS)
_STEPS = cli.define("steps", _DEFAULT.steps, flag_values=FLAGS)
_BATCH = cli.define("batch_size", _DEFAULT.batch_size, flag_values=FLAGS)
_LR = cli.define("learning_rate", _DEFAULT.learning_rate,
                 help="Adam step size.", flag_values=FLAGS)
_HOP = cli.define("segment_hop", _DEFAULT.segment_hop, flag_values=FLAGS)
_MIN_CLIP = cli.define("min_clip_fraction", _DEFAULT.min_clip_fraction,
                       flag_values=FLAGS)
_VALIDATION = flags.DEFINE_float(
    "validation_fraction", _DEFAULT.validation_fraction,
    "Fraction of each probe's train part held out for validation.",
    flag_values=FLAGS)
_OUT_DIR = cli.define("out_dir", _DEFAULT.out_dir, flag_values=FLAGS)


def config_from_flags() -> SweepConfig:
  """The sweep configuration given by the parsed flags."""
  try:
    seeds = tuple(int(seed) for seed in _SEEDS.value)
  except ValueError as error:
    raise UserError(f"--seeds must be integers, got {_SEEDS.value}") from error
  return SweepConfig(
      corpus=_CORPUS.value, corpus_dir=_CORPUS_DIR.value,
      encoder=_ENCODER.value, pooling=_POOLING.value,
      variants=tuple(_VARIANTS.value), seeds=seeds, steps=_STEPS.value,
      batch_size=_BATCH.value, learning_rate=_LR.value,
      segment_hop=_HOP.value, min_clip_fraction=_MIN_CLIP.value,
      validation_fraction=_VALIDATION.value, out_dir=_OUT_DIR.value)


def run() -> None:
  cli.run_study(config_from_flags, run_fm_validation, FLAGS)


if __name__ == "__main__":
  run()
