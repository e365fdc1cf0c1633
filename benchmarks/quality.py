"""Representation quality of the SSL tasks (Tagliasacchi et al. 2020, "Pre-training audio representations with self-supervision")."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional, Sequence

from absl import logging
import numpy as np
from tqdm import tqdm

from model import cli
from model.config_checks import require_choice, require_positive
from model import evaluation
from model.datasets import synthetic
from model.datasets.audio import decode_clips
from model.datasets.clips import ClipTable
from model.datasets.pipeline import SegmentPolicy, training_segments
from model.encoders import ENCODERS, POOLINGS, Encoder, EncoderConfig
from model.ssl_model import ModelSpec
from model.tasks import SSL_TASKS
from model.train import TrainConfig, train_centralized

__all__ = ["LOGMEL_BASELINE", "RANDOM_INIT", "RETRIEVAL", "SUPERVISED",
           "QualityConfig",
           "run_quality_benchmark"]

#: Row of the encoder at its initial (seeded) weights.
RANDOM_INIT = "random init"
#: Row of the non-learned features (log-mel mean + std over the clip).
LOGMEL_BASELINE = evaluation.LOGMEL_BASELINE
#: Row of the encoders trained from scratch on each downstream task's labels.
SUPERVISED = "supervised"
#: Column of the keyword retrieval mean average precision.
RETRIEVAL = "retrieval_map"

_LAUNCHER = "python -m benchmarks.quality_main"


@dataclasses.dataclass(frozen=True)
class QualityConfig:
  """What the benchmark trains and evaluates.

  Attributes:
    corpus: Key of :data:`model.datasets.synthetic.CORPUS_PRESETS`.
    corpus_dir: Where the corpus is generated (reused when complete); None:
      ``<out_dir>/corpus``.
    encoder: Key of :data:`model.encoders.ENCODERS`, for every row.
    pooling: Key of :data:`model.encoders.POOLINGS`: the encoder's pooling
      (replaces the preset's).
    tasks: SSL tasks (keys of ``SSL_TASKS``), one row each.
    downstream_tasks: Label columns probed; empty: every label column of the
      corpus that :func:`model.evaluation.split_for_task` can split.
    steps: SSL training steps per task.
    batch_size: SSL examples per step.
    learning_rate: SSL Adam step size.
    segment_hop: Hop between SSL training segments, in patches (0.96 s):
      ``SegmentPolicy.hop_patches`` (default: the policy every trainer uses).
    min_clip_fraction: Shortest clip used for SSL training, as a fraction of
      the task's example length; clips shorter than an example but at least
      this long become one zero-padded segment (1.0: no padding):
      ``SegmentPolicy.min_example_fraction`` (default: the common policy's).
    supervised_steps: Steps of each supervised baseline and fine-tuning run
      (Adam, 64 patches per step).
    fine_tune_blocks: Top conv blocks unfrozen when fine-tuning the best SSL
      encoder, one run per value and downstream task.
    probe_folds: Cross-validation folds of the linear probes and the
      log-mel baseline (1: one 70/30 split per task; k > 1: every labelled
      clip tested once, :func:`model.evaluation.cross_validation_splits`).
      The supervised baselines and fine-tuning keep the single split.
    seed: Seed of the corpus splits, initial weights and batch order.
    out_dir: Output directory (runs, report, tables, chart).
  """

  corpus: str = "full"
  corpus_dir: Optional[str] = None
  encoder: str = "small"
  pooling: str = "max"
  tasks: tuple[str, ...] = tuple(SSL_TASKS)
  downstream_tasks: tuple[str, ...] = ()
  steps: int = 1000
  batch_size: int = 16
  learning_rate: float = 1e-3
  segment_hop: float = SegmentPolicy().hop_patches
  min_clip_fraction: float = SegmentPolicy().min_example_fraction
  supervised_steps: int = 500
  fine_tune_blocks: tuple[int, ...] = (1, 2)
  probe_folds: int = 1
  seed: int = 0
  out_dir: str = "quality_output"

  def __post_init__(self):
    for field in ("tasks", "downstream_tasks", "fine_tune_blocks"):
      object.__setattr__(self, field, tuple(getattr(self, field)))
    require_choice(self, ["corpus"], synthetic.CORPUS_PRESETS)
    require_choice(self, ["encoder"], ENCODERS)
    require_choice(self, ["pooling"], POOLINGS)
    unknown = [task for task in self.tasks if task not in SSL_TASKS]
    if not self.tasks or unknown or len(set(self.tasks)) < len(self.tasks):
      raise ValueError(f"QualityConfig.tasks must be distinct keys of "
                       f"{sorted(SSL_TASKS)}, got {self.tasks}")
    require_positive(self, ("steps", "batch_size", "supervised_steps",
                            "probe_folds"))
    if self.learning_rate <= 0 or self.segment_hop <= 0:
      raise ValueError(f"QualityConfig.learning_rate and segment_hop must be "
                       f"positive, got {self.learning_rate} and "
                       f"{self.segment_hop}")
    if not 0 < self.min_clip_fraction <= 1:
      raise ValueError(f"QualityConfig.min_clip_fraction must be in (0, 1], "
                       f"got {self.min_clip_fraction}")
    num_blocks = len(ENCODERS[self.encoder].channels)
    if not all(0 <= k <= num_blocks for k in self.fine_tune_blocks):
      raise ValueError(f"QualityConfig.fine_tune_blocks must be in "
                       f"[0, {num_blocks}], got {self.fine_tune_blocks}")

  @property
  def segment_policy(self) -> SegmentPolicy:
    """How SSL training clips are cut (see :class:`SegmentPolicy`)."""
    return SegmentPolicy(hop_patches=self.segment_hop,
                         min_example_fraction=self.min_clip_fraction)

  @property
  def corpus_path(self) -> str:
    """The corpus directory: ``corpus_dir`` or ``<out_dir>/corpus``."""
    return self.corpus_dir or os.path.join(self.out_dir, "corpus")

  @property
  def encoder_config(self) -> EncoderConfig:
    """The encoder preset with the configured pooling."""
    return dataclasses.replace(ENCODERS[self.encoder], pooling=self.pooling)


def _command_line(config: QualityConfig) -> str:
  """The launcher command that reproduces ``config`` (flags = fields)."""
  return cli.command_line(_LAUNCHER, {f.name: getattr(config, f.name)
                                      for f in dataclasses.fields(config)})


def _splits(config: QualityConfig, table: ClipTable
            ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]],
                       dict[str, str]]:
  """Train/test splits of the downstream tasks, and skipped tasks' reasons.

  Raises:
    ValueError: An explicitly requested downstream task cannot be split.
  """
  if config.downstream_tasks:
    return {task: evaluation.split_for_task(table, task, seed=config.seed)
            for task in config.downstream_tasks}, {}
  splits, skipped = {}, {}
  for task in evaluation.default_tasks(table):
    try:
      splits[task] = evaluation.split_for_task(table, task, seed=config.seed)
    except ValueError as error:
      logging.warning("skipping downstream task %r: %s", task, error)
      skipped[task] = str(error)
  if not splits:
    raise ValueError(f"no label column of corpus {config.corpus!r} can be "
                     f"split: {skipped}")
  return splits, skipped


def _train_ssl(config: QualityConfig, task: str,
               waveforms: Sequence[np.ndarray], show_progress: bool
               ) -> tuple[Encoder, dict[str, object]]:
  """Trains (or resumes, or reuses) one SSL task; its encoder and a summary."""
  spec = ModelSpec(task=task, encoder=config.encoder_config,
                   seed=config.seed)
  segments = training_segments(waveforms, spec, config.segment_policy)
  result = train_centralized(
      spec, TrainConfig(steps=config.steps, batch_size=config.batch_size,
                        learning_rate=config.learning_rate, seed=config.seed),
      segments.waveforms, os.path.join(config.out_dir, "runs", task),
      dataset_info={"kind": "synthetic", "preset": config.corpus,
                    "segment_hop": config.segment_hop,
                    "min_clip_fraction": config.min_clip_fraction},
      show_progress=show_progress)
  (_, first), (_, last) = result.losses[0], result.losses[-1]
  logging.info("%s: %d examples, loss %.4f -> %.4f (%s)", task,
               len(segments), first, last,
               "reused" if result.resumed_from == config.steps else
               f"trained from step {result.resumed_from}")
  return result.model.encoder, {"examples": len(segments),
                                "first loss": first, "final loss": last}


def _fine_tuning_table(probe: dict[str, float], supervised: dict[str, float],
                       tuned: dict[int, dict[str, float]], best: str
                       ) -> dict[str, dict[str, float]]:
  """Probe, fine-tuned and supervised accuracy and the gap recovered by task."""
  table = {f"probe ({best})": {task: probe[task] for task in supervised}}
  table.update({f"fine-tune k={blocks}": accuracy
                for blocks, accuracy in tuned.items()})
  table[SUPERVISED] = supervised
  table.update({
      f"gap recovered k={blocks}": {
          task: evaluation.gap_recovered(probe[task], accuracy[task],
                                         supervised[task])
          for task in supervised}
      for blocks, accuracy in tuned.items()})
  return table


def _report(config: QualityConfig, rows: dict[str, dict[str, float]],
            best: str, fine_tuning: dict[str, dict[str, float]],
            training: dict[str, dict[str, object]], skipped: dict[str, str],
            wall_s: float) -> str:
  """The Markdown report: main table, fine-tuning table, runs, command."""
  steps = config.supervised_steps
  folds = (f" Probes are {config.probe_folds}-fold cross-validated (every "
           "labelled clip tested once, speaker-disjoint folds except for "
           "`speaker`); the supervised and fine-tuning rows use one 70/30 "
           "split." if config.probe_folds > 1 else "")
  lines = [
      f"# Representation quality: {config.corpus} corpus, {config.encoder} "
      f"encoder", "",
      "Linear-probe accuracy on frozen clip embeddings (mean over 0.96 s "
      "patches); test speakers are unseen in training except for `speaker`, "
      f"which is split within speakers. `{RETRIEVAL}`: keyword retrieval mean "
      f"average precision (cosine). `{SUPERVISED}`: the same encoder trained "
      f"from scratch on each task's training labels ({steps} steps), one "
      "encoder per column; its retrieval cell is empty (an encoder trained on "
      "keyword labels would retrieve its own training clips)." + folds, "",
      evaluation.format_markdown_table(rows), ""]
  if skipped:
    lines += ["Skipped downstream tasks: " + "; ".join(
        f"`{task}` ({reason})" for task, reason in skipped.items()), ""]
  lines += [
      f"## Fine-tuning `{best}` (best mean probe accuracy)", "",
      f"The embedding layer, the top k conv blocks and a linear head trained "
      f"for {steps} steps; gap recovered = (fine-tuned - probe) / "
      "(supervised - probe).", "",
      evaluation.format_markdown_table(fine_tuning), "",
      "## SSL training runs", "",
      "| task | examples | first loss | final loss |", "|---|---:|---:|---:|",
      *(f"| {task} | {s['examples']} | {s['first loss']:.4f} | "
        f"{s['final loss']:.4f} |" for task, s in training.items()), "",
      "## Command", "", "```", _command_line(config), "```", "",
      "```json", json.dumps(dataclasses.asdict(config), indent=2), "```", "",
      f"Wall time of this invocation: {wall_s:.0f} s.", ""]
  return "\n".join(lines)


def run_quality_benchmark(config: QualityConfig, *, show_progress: bool = True
                          ) -> dict[str, dict[str, float]]:
  """Trains every SSL task, probes all encoders and fine-tunes the best one.

  Generates (or reuses) the corpus, decodes it once, trains each SSL task in
  ``<out_dir>/runs/<task>`` (resumed or reused as it stands), and writes
  ``report.md``, ``results.csv``, ``quality.png`` and ``fine_tune.csv`` to
  ``out_dir``.

  Args:
    config: What to run.
    show_progress: Show progress bars.

  Returns:
    The main table: scores (each downstream task's probe accuracy and
    :data:`RETRIEVAL`) by row (:data:`RANDOM_INIT`, :data:`SUPERVISED`, then
    each SSL task).

  Raises:
    ValueError: A requested downstream task cannot be split, or none can.
    model.run_dir.RunConfigMismatch: ``<out_dir>/runs/<task>`` holds a run
      with other settings (use another ``out_dir``).
  """
  start = time.time()
  table, waveforms, _ = decode_clips(
      synthetic.generate_corpus(config.corpus_path,
                                synthetic.CORPUS_PRESETS[config.corpus],
                                show_progress=show_progress),
      show_progress=show_progress)
  splits, skipped = _splits(config, table)
  encoder_config = config.encoder_config
  frontend = ModelSpec(encoder=encoder_config).frontend
  encoders, training = {}, {}
  for task in config.tasks:
    encoders[task], training[task] = _train_ssl(config, task, waveforms,
                                                show_progress)

  probe = dict(tasks=tuple(splits), seed=config.seed,
               probe_folds=config.probe_folds)
  tune = dict(steps=config.supervised_steps, seed=config.seed)
  jobs = 2 + len(encoders) + len(splits) * (1 + len(config.fine_tune_blocks))
  with tqdm(total=jobs, desc="evaluate", unit="job",
            disable=not show_progress) as bar:
    probed = {}
    for name, encoder in [(RANDOM_INIT, Encoder(encoder_config,
                                                seed=config.seed)),
                          *encoders.items()]:
      bar.set_postfix_str(f"probe {name}")
      scores = evaluation.evaluate_encoder(encoder, table, waveforms, frontend,
                                           **probe)
      probed[name] = {column: scores[column]
                      for column in (*splits, RETRIEVAL) if column in scores}
      logging.info("probe %s: %s", name, probed[name])
      bar.update()
    bar.set_postfix_str(f"probe {LOGMEL_BASELINE}")
    scores = evaluation.evaluate_logmel_baseline(table, waveforms, frontend,
                                                 **probe)
    baseline = {column: scores[column]
                for column in (*splits, RETRIEVAL) if column in scores}
    bar.update()
    supervised = {}
    for task, split in splits.items():
      bar.set_postfix_str(f"{SUPERVISED} {task}")
      supervised[task] = evaluation.supervised_baseline(
          encoder_config, table, waveforms, frontend, task, split, **tune)
      logging.info("%s %s: %.4f", SUPERVISED, task, supervised[task])
      bar.update()
    best = max(config.tasks,
               key=lambda name: np.mean([probed[name][t] for t in splits]))
    tuned = {}
    for blocks in config.fine_tune_blocks:
      for task, split in splits.items():
        bar.set_postfix_str(f"fine-tune {best} k={blocks} {task}")
        tuned.setdefault(blocks, {})[task] = evaluation.fine_tune(
            encoders[best], table, waveforms, frontend, task, split,
            trainable_blocks=blocks, **tune)
        bar.update()
  rows = {RANDOM_INIT: probed.pop(RANDOM_INIT), LOGMEL_BASELINE: baseline,
          SUPERVISED: supervised, **probed}
  fine_tuning = _fine_tuning_table(rows[best], supervised, tuned, best)

  out = config.out_dir
  evaluation.write_csv(rows, os.path.join(out, "results.csv"))
  evaluation.write_csv(fine_tuning, os.path.join(out, "fine_tune.csv"))
  evaluation.plot_quality_table(
      rows, os.path.join(out, "quality.png"),
      title=f"SSL tasks, {config.encoder} encoder, {config.corpus} corpus",
      ylabel="probe accuracy / mAP")
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(_report(config, rows, best, fine_tuning, training, skipped,
                    time.time() - start))
  return rows
