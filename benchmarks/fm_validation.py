"""Validation sweep of the feature-matching tasks' paper-named settings.

Each variant is a task plus :class:`model.tasks.TaskConfig` overrides (e.g.
``simsiam:predictor_hidden_dim=64``, ``barlow_twins:barlow_lambda=1/16``).
Every variant is trained centrally as in the quality benchmark
(:mod:`benchmarks.quality`: same corpus, encoder, steps, batch, learning
rate and segments) once per seed, then scored on the *validation* parts of
the probe tasks (:func:`model.evaluation.probe_validation`: fit and
validation clips carved out of the train split, never a test clip), next to
the random-init encoder of the same seed. A collapse diagnostic comes with
each row: the effective rank (Roy & Vetterli, 2007: ``exp`` of the entropy
of the normalized singular values of the centered clip embeddings) and the
final training loss.

Writes ``report.md`` (mean ± std over seeds), ``results.csv`` (every seed's
value) and ``fm_validation.png`` to ``out_dir``; runs live in
``<out_dir>/runs/seed_<s>/<variant>`` and are reused by a rerun.
"""

from __future__ import annotations

import csv
import dataclasses
import fractions
import os
from typing import Any, Optional

from absl import logging
import numpy as np
from tqdm import tqdm

from benchmarks.quality_seeds import SeedStatistics, format_seeds_table
from model import cli
from model import evaluation
from model.config_checks import require_choice, require_positive
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.pipeline import SegmentPolicy, training_segments
from model.encoders import ENCODERS, POOLINGS, Encoder
from model.evaluation import EFFECTIVE_RANK, effective_rank
from model.ssl_model import ModelSpec
from model.tasks import FEATURE_MATCHING_TASKS, TaskConfig
from model.train import TrainConfig, train_centralized

__all__ = ["SweepConfig", "DEFAULT_VARIANTS", "RANDOM_INIT",
           "EFFECTIVE_RANK", "FINAL_LOSS", "VALIDATION_MEAN",
           "parse_variant", "effective_rank", "run_fm_validation"]

_LAUNCHER = "python -m benchmarks.fm_validation_main"

#: The variants swept by default: each task's defaults, then one
#: paper-named setting changed at a time.
DEFAULT_VARIANTS = (
    "simsiam", "simsiam:predictor_hidden_dim=16",
    "simsiam:predictor_hidden_dim=64",
    "barlow_twins", "barlow_twins:barlow_lambda=1/16",
    "barlow_twins:barlow_lambda=1/256",
)
RANDOM_INIT = "random init"
FINAL_LOSS = "final loss"
#: Mean validation accuracy over the probe tasks.
VALIDATION_MEAN = "validation mean"


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """What the sweep runs (flags of ``fm_validation_main`` = fields).

  Attributes:
    corpus: Built-in synthetic corpus preset.
    corpus_dir: Where the corpus is generated or reused (default
      ``<out_dir>/corpus``).
    encoder: Encoder preset.
    pooling: Encoder pooling.
    variants: ``task[:field=value...]``; values may be fractions (``1/16``).
    seeds: Seeds (initial weights, batch order, validation splits).
    steps: Training steps per run.
    batch_size: Examples per step.
    learning_rate: Adam step size.
    segment_hop: Hop between training segments, in patches.
    min_clip_fraction: Shortest training clip, as a fraction of an example.
    validation_fraction: Fraction of each probe's train part held out.
    out_dir: Output directory.
  """

  corpus: str = "demo"
  corpus_dir: Optional[str] = None
  encoder: str = "small"
  pooling: str = "max"
  variants: tuple[str, ...] = DEFAULT_VARIANTS
  seeds: tuple[int, ...] = (0, 1, 2)
  steps: int = 400
  batch_size: int = 16
  learning_rate: float = 1e-3
  segment_hop: float = 0.5
  min_clip_fraction: float = 1.0
  validation_fraction: float = 0.3
  out_dir: str = "fm_validation_output"

  def __post_init__(self):
    for field in ("variants", "seeds"):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    require_choice(self, ("corpus",), synthetic.CORPUS_PRESETS)
    require_choice(self, ("encoder",), ENCODERS)
    require_choice(self, ("pooling",), POOLINGS)
    if not self.variants:
      raise ValueError("SweepConfig.variants: need at least one variant")
    if len(set(self.variants)) < len(self.variants):
      raise ValueError(f"SweepConfig.variants must be distinct, got "
                       f"{self.variants}")
    for variant in self.variants:
      parse_variant(variant)
    if not self.seeds or len(set(self.seeds)) < len(self.seeds):
      raise ValueError(f"SweepConfig.seeds must be distinct and at least "
                       f"one, got {self.seeds}")
    require_positive(self, ("steps", "batch_size"))
    if not 0.0 < self.validation_fraction < 1.0:
      raise ValueError(f"SweepConfig.validation_fraction must be in (0, 1), "
                       f"got {self.validation_fraction}")


def parse_variant(text: str) -> tuple[str, TaskConfig]:
  """``"task[:field=value...]"`` -> the task and its config.

  Raises:
    ValueError: Unknown task (not feature-matching), unknown field, a value
      that does not parse as the field's type, or an invalid config; the
      message names the variant and the field.
  """
  task, *assignments = text.split(":")
  if task not in FEATURE_MATCHING_TASKS:
    raise ValueError(f"variant {text!r}: task {task!r} is not one of the "
                     f"feature-matching tasks {sorted(FEATURE_MATCHING_TASKS)}")
  defaults = TaskConfig()
  overrides: dict[str, Any] = {}
  for assignment in assignments:
    field, sep, value = assignment.partition("=")
    if not sep or not hasattr(defaults, field):
      raise ValueError(f"variant {text!r}: expected field=value with a "
                       f"TaskConfig field, got {assignment!r}")
    kind = type(getattr(defaults, field))
    if kind not in (int, float):
      raise ValueError(f"variant {text!r}: TaskConfig.{field} is not a "
                       f"number")
    try:
      number = fractions.Fraction(value)
    except ValueError:
      raise ValueError(f"variant {text!r}: TaskConfig.{field} expects a "
                       f"number, got {value!r}") from None
    if kind is int and number.denominator != 1:
      raise ValueError(f"variant {text!r}: TaskConfig.{field} expects an "
                       f"integer, got {value!r}")
    overrides[field] = kind(number)
  try:
    return task, TaskConfig(**overrides)
  except ValueError as error:
    raise ValueError(f"variant {text!r}: {error}") from error


def _dir_name(variant: str) -> str:
  return variant.replace(":", "__").replace("/", "over")


def _scores(encoder: Encoder, table, waveforms, frontend, tasks, seed: int,
            validation_fraction: float) -> dict[str, float]:
  scores = evaluation.probe_validation(
      encoder, table, waveforms, frontend, tasks=tasks,
      validation_fraction=validation_fraction, seed=seed)
  scores[VALIDATION_MEAN] = float(np.mean(list(scores.values())))
  scores[EFFECTIVE_RANK] = effective_rank(
      evaluation.clip_embeddings(encoder, waveforms, frontend))
  return scores


def run_fm_validation(config: SweepConfig, *, show_progress: bool = True
                      ) -> dict[str, dict[str, SeedStatistics]]:
  """Trains every variant for every seed and scores it on validation probes.

  Args:
    config: What to run.
    show_progress: Show a progress bar.

  Returns:
    Statistics over seeds by column (probe tasks, :data:`VALIDATION_MEAN`,
    :data:`EFFECTIVE_RANK`, :data:`FINAL_LOSS`) by row (:data:`RANDOM_INIT`,
    then the variants).

  Raises:
    ValueError: No probe task of the corpus has a validation part.
  """
  corpus_dir = config.corpus_dir or os.path.join(config.out_dir, "corpus")
  table, waveforms, _ = decode_clips(
      synthetic.generate_corpus(corpus_dir,
                                synthetic.CORPUS_PRESETS[config.corpus],
                                show_progress=show_progress),
      show_progress=show_progress)
  encoder_config = dataclasses.replace(ENCODERS[config.encoder],
                                       pooling=config.pooling)
  policy = SegmentPolicy(hop_patches=config.segment_hop,
                         min_example_fraction=config.min_clip_fraction)
  values: dict[str, dict[str, list[float]]] = {}
  sizes: dict[str, list[int]] = {}
  with tqdm(total=len(config.seeds) * (1 + len(config.variants)),
            desc="fm validation", unit="run",
            disable=not show_progress) as bar:
    for seed in config.seeds:
      tasks = []
      for task in evaluation.default_tasks(table):
        try:
          _, validation = evaluation.validation_split_for_task(
              table, task, validation_fraction=config.validation_fraction,
              seed=seed)
        except ValueError as error:
          logging.warning("not probing %r: %s", task, error)
          continue
        tasks.append(task)
        sizes.setdefault(task, []).append(len(validation))
      if not tasks:
        raise ValueError(f"fm validation: no probe task of {table.name} has "
                         f"fit, validation and test parts")
      frontend = ModelSpec(encoder=encoder_config).frontend

      def add(row: str, scores: dict[str, float]) -> None:
        for column, value in scores.items():
          values.setdefault(row, {}).setdefault(column, []).append(value)

      bar.set_postfix_str(f"seed {seed} {RANDOM_INIT}")
      add(RANDOM_INIT, _scores(Encoder(encoder_config, seed=seed), table,
                               waveforms, frontend, tasks, seed,
                               config.validation_fraction))
      bar.update()
      for variant in config.variants:
        bar.set_postfix_str(f"seed {seed} {variant}")
        task, task_config = parse_variant(variant)
        spec = ModelSpec(task=task, encoder=encoder_config,
                         task_config=task_config, seed=seed)
        result = train_centralized(
            spec, TrainConfig(steps=config.steps,
                              batch_size=config.batch_size,
                              learning_rate=config.learning_rate, seed=seed),
            training_segments(waveforms, spec, policy).waveforms,
            os.path.join(config.out_dir, "runs", f"seed_{seed}",
                         _dir_name(variant)),
            show_progress=False)
        scores = _scores(result.model.encoder, table, waveforms, frontend,
                         tasks, seed, config.validation_fraction)
        scores[FINAL_LOSS] = result.losses[-1][1]
        add(variant, scores)
        logging.info("seed %d %s: %s", seed, variant, scores)
        bar.update()
  complete = len(config.seeds)
  rows = {row: {column: SeedStatistics(tuple(v))
                for column, v in columns.items() if len(v) == complete}
          for row, columns in values.items()}
  _write(config, rows, sizes)
  return rows


def _write(config: SweepConfig, rows: dict[str, dict[str, SeedStatistics]],
           sizes: dict[str, list[int]]) -> None:
  os.makedirs(config.out_dir, exist_ok=True)
  with open(os.path.join(config.out_dir, "results.csv"), "w",
            newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["row", "column", "mean", "std",
                     *(f"seed_{s}" for s in config.seeds)])
    for row, columns in rows.items():
      for column, cell in columns.items():
        writer.writerow([row, column, f"{cell.mean:.6f}", f"{cell.std:.6f}",
                         *(f"{v:.6f}" for v in cell.values)])
  evaluation.plot_quality_table(
      {row: {c: s.mean for c, s in columns.items()
             if c not in (EFFECTIVE_RANK, FINAL_LOSS)}
       for row, columns in rows.items()},
      os.path.join(config.out_dir, "fm_validation.png"),
      title=f"validation probes, {config.encoder} encoder, {config.corpus} "
            f"corpus, mean of seeds {', '.join(map(str, config.seeds))}",
      ylabel="validation accuracy")
  command = cli.command_line(_LAUNCHER, {
      f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
  clips = ", ".join(f"{task} {'/'.join(map(str, n))}"
                    for task, n in sizes.items())
  with open(os.path.join(config.out_dir, "report.md"), "w",
            encoding="utf-8") as f:
    f.write(
        f"# Feature-matching settings on validation probes\n\n"
        f"Linear-probe accuracy on validation clips (carved out of each "
        f"probe's train split; no test clip), mean ± sample std over seeds "
        f"{', '.join(map(str, config.seeds))}; {EFFECTIVE_RANK} of all clip "
        f"embeddings (collapse diagnostic). Validation clips per seed: "
        f"{clips}.\n\n{format_seeds_table(rows)}\n\n## Command\n\n"
        f"```\n{command}\n```\n")
