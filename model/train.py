"""Centralized self-supervised training of an encoder on a set of segments.

Resumable (checkpoint every ``checkpoint_every`` steps; rerun the same command
to continue), with TensorBoard scalars, a CSV loss log, a progress bar and a
``config.json`` in the run directory. The final model is saved with
:func:`model.ssl_model.save_model` under ``<run_dir>/model``.
:func:`run_training` is the whole run on a dataset on disk (decode, segment,
train, probe), as ``python -m model.train_main`` runs it.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from typing import Callable, Optional

from absl import logging
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from model import evaluation
from model import randomness
from model.config_checks import require_positive
from model.datasets.audio import decode_clips
from model.datasets.loaders import DatasetSource
from model.datasets.pipeline import training_dataset, training_segments
from model.encoders import Encoder
from model.errors import WeightsMismatchError
from model.run_dir import write_or_check_config
from model.saved_model import positional_weight_differences
from model.ssl_model import (ModelSpec, SSLModel, save_model,
                             upgrade_model_section)
from model.tasks import check_task_batch_size

__all__ = ["TrainConfig", "OPTIMIZERS", "TrainResult", "TrainingRun",
           "run_training", "train_centralized"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimization settings of a centralized run.

  Attributes:
    steps: Optimizer steps.
    batch_size: Examples per step (static).
    optimizer: Key of ``OPTIMIZERS``.
    learning_rate: Step size.
    momentum: SGD momentum.
    checkpoint_every: Steps between checkpoints.
    log_every: Steps between logged losses.
    seed: Seed of the batch order and of in-graph randomness.
  """

  steps: int = 300
  batch_size: int = 16
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  momentum: float = 0.9
  checkpoint_every: int = 100
  log_every: int = 10
  seed: int = 0

  def __post_init__(self):
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"TrainConfig.optimizer: unknown {self.optimizer!r}; "
                       f"expected one of {sorted(OPTIMIZERS)}")
    require_positive(self, ("steps", "batch_size", "checkpoint_every",
                            "log_every"))


#: Optimizer factories, keyed by flag value.
OPTIMIZERS: dict[str, Callable[[TrainConfig], tf.keras.optimizers.Optimizer]] = {
    "adam": lambda c: tf.keras.optimizers.Adam(c.learning_rate),
    "sgd": lambda c: tf.keras.optimizers.SGD(c.learning_rate,
                                             momentum=c.momentum),
}


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a centralized run produced.

  Attributes:
    model: The trained model.
    losses: ``(step, loss)`` pairs logged over the whole run (resumed runs
      include the earlier part).
    resumed_from: Step the run resumed from (0 for a fresh run).
    wall_s: Wall time of this invocation.
    model_dir: Where the final model was saved.
  """

  model: SSLModel
  losses: tuple[tuple[int, float], ...]
  resumed_from: int
  wall_s: float
  model_dir: str


def _read_loss_log(path: str, up_to_step: int) -> list[tuple[int, float]]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]
  return [r for r in rows if r[0] <= up_to_step]


def _check_checkpoint_weights(path: str, model: SSLModel,
                              run_dir: str) -> None:
  """Raises if the checkpoint's weights do not fit ``model`` by position.

  The checkpoint stores ``model.weights`` as a list: a task or encoder whose
  weights changed since the run was saved would otherwise fail deep inside
  TensorFlow, or load some weights into the wrong variables.

  Raises:
    WeightsMismatchError: The number or the shapes of the weights differ
      (the message names the checkpoint, each weight and what to do).
  """
  saved = {}
  for key, shape in tf.train.list_variables(path):
    parts = key.split("/")
    if (len(parts) == 4 and parts[0] == "weights"
        and parts[2:] == [".ATTRIBUTES", "VARIABLE_VALUE"]):
      saved[int(parts[1])] = shape
  differences = positional_weight_differences(
      dict(zip(model.weight_names, (tuple(v.shape) for v in model.weights))),
      saved)
  if differences:
    raise WeightsMismatchError(
        f"{path}: the checkpoint's {len(saved)} weights do not fit task "
        f"{model.spec.task!r} with encoder {model.spec.encoder.name!r} as "
        f"this version builds it ({len(model.weights)} weights, matched by "
        f"position): " + "; ".join(differences)
        + f". The run in {run_dir} was probably trained by an earlier "
        f"version of the project; train into a new run directory, or "
        f"resume it with the version that started it")


def train_centralized(spec: ModelSpec, config: TrainConfig,
                      waveforms: np.ndarray, run_dir: str, *,
                      dataset_info: dict | None = None,
                      show_progress: bool = True) -> TrainResult:
  """Trains ``spec``'s encoder and task head on ``waveforms``.

  Args:
    spec: Model to build (task, encoder preset, front-end, seed).
    config: Optimization settings.
    waveforms: float32 ``[n, example_samples]`` training segments.
    run_dir: Run directory (created; an existing run with the same
      configuration is resumed from its last checkpoint).
    dataset_info: Description of the data, recorded in ``config.json``.
    show_progress: Show a tqdm bar with loss and ETA.

  Returns:
    The trained model and its loss log.

  Raises:
    RunConfigMismatch: ``run_dir`` holds a different run.
    ValueError: ``waveforms`` has the wrong shape, or ``config.batch_size``
      is below the task's minimum.
    FloatingPointError: The loss became NaN/inf (the last good checkpoint is
      kept).
  """
  check_task_batch_size(spec.task, config.batch_size, "TrainConfig.batch_size")
  model = SSLModel(spec)
  if waveforms.ndim != 2 or waveforms.shape[1] != model.example_samples:
    raise ValueError(
        f"train_centralized: task {spec.task!r} needs waveforms "
        f"[n, {model.example_samples}], got {list(waveforms.shape)}")
  os.makedirs(run_dir, exist_ok=True)
  write_or_check_config(run_dir, {
      "kind": "centralized", "model": spec.to_dict(),
      "train": dataclasses.asdict(config), "data": dataset_info or {},
      "num_examples": int(len(waveforms))}, growable=["train.steps"],
      upgrade=upgrade_model_section)

  optimizer = OPTIMIZERS[config.optimizer](config)
  optimizer.build(model.weights)
  step = tf.Variable(0, dtype=tf.int64, name="step")
  checkpoint = tf.train.Checkpoint(step=step, weights=model.weights,
                                   optimizer=optimizer)
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.join(run_dir, "checkpoints"), max_to_keep=2)
  if manager.latest_checkpoint:
    _check_checkpoint_weights(manager.latest_checkpoint, model, run_dir)
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    logging.info("Resumed %s at step %d", run_dir, int(step))
  start = int(step)

  @tf.function
  def train_step(batch):
    # Crops and augmentations are a function of (seed, step): resuming
    # repeats the uninterrupted run exactly.
    with tf.GradientTape() as tape, randomness.stateless_seed(
        tf.stack([tf.constant(config.seed, tf.int64), step])):
      loss = model.loss(batch)
    grads = tape.gradient(loss, model.weights)
    optimizer.apply_gradients(zip(grads, model.weights))
    return loss

  log_path = os.path.join(run_dir, "losses.csv")
  losses = _read_loss_log(log_path, start)
  with open(log_path, "w", newline="") as f:  # Drop entries past the restore.
    csv.writer(f).writerows([("step", "loss"), *losses])
  writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
  dataset = training_dataset(waveforms, config.batch_size, seed=config.seed,
                             start_step=start,
                             num_steps=config.steps - start)
  t0 = time.time()
  with tqdm(total=config.steps, initial=start, disable=not show_progress,
            desc=f"train {spec.task}/{spec.encoder.name}", unit="step",
            dynamic_ncols=True) as bar, writer.as_default():
    for batch in dataset:
      loss = float(train_step(batch))
      current = int(step.assign_add(1))
      if not np.isfinite(loss):
        raise FloatingPointError(
            f"loss is {loss} at step {current} of {run_dir}; last good "
            f"checkpoint: {manager.latest_checkpoint}. Lower the learning "
            f"rate ({config.learning_rate}).")
      bar.update(1)
      if current % config.log_every == 0 or current == config.steps:
        losses.append((current, loss))
        bar.set_postfix(loss=f"{loss:.4f}")
        tf.summary.scalar("loss", loss, step=current)
        with open(log_path, "a", newline="") as f:
          csv.writer(f).writerow((current, loss))
      if current % config.checkpoint_every == 0 or current == config.steps:
        manager.save(checkpoint_number=current)
  model_dir = os.path.join(run_dir, "model")
  save_model(model, model_dir)
  return TrainResult(model=model, losses=tuple(losses), resumed_from=start,
                     wall_s=time.time() - t0, model_dir=model_dir)


@dataclasses.dataclass(frozen=True)
class TrainingRun:
  """What :func:`run_training` produced.

  Attributes:
    result: The centralized run (model, loss log, where it was saved).
    num_examples: Training segments cut from the dataset.
    probes: Linear-probe metrics of the random-init and the trained
      encoder (by row name), or ``None`` without evaluation.
    report: The run's summary: final loss and model directory, then the
      probe table.
  """

  result: TrainResult
  num_examples: int
  probes: Optional[dict[str, dict[str, float]]]
  report: str


def run_training(spec: ModelSpec, config: TrainConfig, dataset: DatasetSource,
                 run_dir: str, *, evaluate: bool = True,
                 progress: Optional[Callable[[str], None]] = None
                 ) -> TrainingRun:
  """Trains ``spec`` centrally on a dataset on disk, then probes it.

  Decodes the clips, cuts the training segments
  (:func:`model.datasets.pipeline.training_segments`, the policy the
  federated runs use), trains (:func:`train_centralized`, resumable) and,
  with ``evaluate``, compares the trained and a random-init encoder by
  linear probes on every label (also written to ``<run_dir>/probe.csv``).

  Args:
    spec: Model to train.
    config: Optimization settings.
    dataset: The dataset.
    run_dir: Run directory (rerunning resumes).
    evaluate: Probe the encoder after training.
    progress: Called with a line on the data (decoded clips, segments)
      before training starts.

  Returns:
    The run and its report.

  Raises:
    UserError: The dataset is missing or unreadable (from the loaders).
    RunConfigMismatch: ``run_dir`` holds a different run.
  """
  say = progress or (lambda line: None)
  table, waveforms, scan = decode_clips(
      dataset.load(), sample_rate=spec.frontend.sample_rate,
      show_progress=True)
  say(scan.summary())
  segments = training_segments(waveforms, spec)
  say(f"{len(segments)} training examples of "
      f"{segments.waveforms.shape[1] / spec.frontend.sample_rate:.2f} s "
      f"({segments.padded_clips} short clips padded, "
      f"{segments.skipped_clips} skipped)")
  result = train_centralized(
      spec, config, segments.waveforms, run_dir,
      dataset_info={"kind": dataset.kind,
                    "path": os.path.abspath(dataset.path),
                    "clips": len(table)})
  lines = [f"loss {result.losses[0][1]:.4f} -> {result.losses[-1][1]:.4f}; "
           f"model saved to {result.model_dir}"]
  rows = None
  if evaluate:
    rows = {
        "random init": evaluation.evaluate_encoder(
            Encoder(spec.encoder, seed=spec.seed), table, waveforms,
            spec.frontend),
        spec.task: evaluation.evaluate_encoder(
            result.model.encoder, table, waveforms, spec.frontend),
    }
    lines.append(evaluation.format_markdown_table(rows))
    evaluation.write_csv(rows, os.path.join(run_dir, "probe.csv"))
  return TrainingRun(result=result, num_examples=len(segments), probes=rows,
                     report="\n".join(lines))
