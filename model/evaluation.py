"""Downstream evaluation as in Tagliasacchi et al. 2020: probes and tuning."""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import os
import warnings
from typing import Callable, Iterator, Mapping, Optional, Sequence

from absl import logging
from matplotlib.figure import Figure
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (GroupShuffleSplit, StratifiedGroupKFold,
                                     StratifiedKFold, train_test_split)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, normalize
import tensorflow as tf

from model.datasets.clips import ClipTable
from model.encoders import Encoder, EncoderConfig
from model.features import FrontendConfig, frames_to_patches, log_mel
from model.heads import MLPHead

__all__ = [
    "SPEAKER_TASK",
    "validation_split_for_task",
    "Classifier",
    "ProbeResult",
    "binomial_stderr",
    "COLLAPSE_RANK",
    "EFFECTIVE_RANK",
    "effective_rank",
    "is_collapsed",
    "cross_validation_splits",
    "pooled_probe",
    "clip_embeddings",
    "clip_patches",
    "default_tasks",
    "evaluate_encoder",
    "evaluate_logmel_baseline",
    "LOGMEL_BASELINE",
    "logmel_statistics",
    "probe_embeddings",
    "probe_validation",
    "fine_tune",
    "format_markdown_table",
    "gap_recovered",
    "linear_probe",
    "NestedFold",
    "NestedSelection",
    "nested_cross_validation_splits",
    "nested_probe_selection",
    "plot_quality_table",
    "probe_encoder",
    "retrieval_map",
    "split_for_task",
    "supervised_baseline",
    "train_classifier",
    "write_csv",
]

#: The task whose labels are the speakers: it is split within each speaker.
SPEAKER_TASK = "speaker"

#: Random speaker-disjoint splits tried to find one whose test labels all
#: occur in train.
_SPLIT_CANDIDATES = 100

#: Queries ranked at once by :func:`retrieval_map` (bounds its memory).
_RETRIEVAL_CHUNK = 1024


def _check_compatible(config: EncoderConfig, frontend: FrontendConfig) -> None:
  """Raises ValueError if the front-end's patches do not fit the encoder."""
  config.check_patch_shape(frontend.patch_shape,
                           source="the front-end's patch shape")


@functools.lru_cache(maxsize=4)
def _patch_function(
    frontend: FrontendConfig) -> Callable[[tf.Tensor], tf.Tensor]:
  """A tf.function: one waveform of any length -> its log-mel patches."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
  def patches(waveform: tf.Tensor) -> tf.Tensor:
    return frames_to_patches(log_mel(waveform, frontend),
                             frontend.patch_frames, pad=True)

  return patches


@functools.lru_cache(maxsize=4)
def _logmel_function(
    frontend: FrontendConfig) -> Callable[[tf.Tensor], tf.Tensor]:
  """A tf.function: one waveform of any length -> its log-mel frames."""
  return tf.function(functools.partial(log_mel, config=frontend),
                     input_signature=[tf.TensorSpec([None], tf.float32)])


def _padded_waveforms(waveforms: Sequence[np.ndarray],
                      frontend: FrontendConfig, caller: str
                      ) -> Iterator[np.ndarray]:
  """Each waveform as float32, zero-padded to at least one front-end window.

  Raises:
    ValueError: A waveform is not 1-D (the message names ``caller`` and its
      index).
  """
  for i, waveform in enumerate(waveforms):
    waveform = np.asarray(waveform, np.float32)
    if waveform.ndim != 1:
      raise ValueError(f"{caller}: waveform {i} must be 1-D, got shape "
                       f"{waveform.shape}")
    shortfall = frontend.window_samples - waveform.size
    yield np.pad(waveform, (0, shortfall)) if shortfall > 0 else waveform


def clip_patches(waveforms: Sequence[np.ndarray], frontend: FrontendConfig
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Cuts every clip's log-mel into non-overlapping patches.

  A clip shorter than one STFT window is zero-padded to it; a clip shorter
  than one patch is padded to one (see
  :func:`model.features.frames_to_patches`), so every clip has at least one
  patch.

  Args:
    waveforms: 1-D float waveforms at ``frontend.sample_rate``.
    frontend: Front-end parameters.

  Returns:
    ``patches``: float32 ``[num_patches, patch_frames, num_mel_bins]``, the
    clips' patches one clip after the other, and ``owner``: int64
    ``[num_patches]``, the index of the clip each patch comes from
    (non-decreasing).

  Raises:
    ValueError: A waveform is not 1-D.
  """
  compute = _patch_function(frontend)
  per_clip = [compute(waveform).numpy() for waveform in
              _padded_waveforms(waveforms, frontend, "clip_patches")]
  if not per_clip:
    return (np.zeros((0, frontend.patch_frames, frontend.num_mel_bins),
                     np.float32), np.zeros(0, np.int64))
  owner = np.repeat(np.arange(len(per_clip)), [len(p) for p in per_clip])
  return np.concatenate(per_clip), owner


def _apply_in_batches(function: Callable[[tf.Tensor], tf.Tensor],
                      patches: np.ndarray, batch_size: int) -> np.ndarray:
  """Applies a ``[n, frames, bins] -> [n, d]`` function batch by batch."""
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  compiled = tf.function(function, input_signature=[
      tf.TensorSpec([None, *patches.shape[1:]], tf.float32)])
  return np.concatenate([compiled(patches[start:start + batch_size]).numpy()
                         for start in range(0, len(patches), batch_size)])


def _clip_means(values: np.ndarray, owner: np.ndarray) -> np.ndarray:
  """Means of ``values`` ``[num_patches, d]`` over each clip's patches."""
  counts = np.bincount(owner)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  return np.add.reduceat(values, starts, axis=0) / counts[:, np.newaxis]


def clip_embeddings(encoder: Encoder, waveforms: Sequence[np.ndarray],
                    frontend: FrontendConfig, *,
                    batch_size: int = 256) -> np.ndarray:
  """Embeds clips: the mean embedding of each clip's log-mel patches.

  Patches of all clips are embedded together, ``batch_size`` at a time.

  Args:
    encoder: The encoder (not modified).
    waveforms: 1-D float waveforms at ``frontend.sample_rate``.
    frontend: Front-end parameters (must match the encoder's patch shape).
    batch_size: Patches per encoder call.

  Returns:
    float32 ``[num_clips, embedding_dim]``.

  Raises:
    ValueError: The front-end does not match the encoder, a waveform is not
      1-D, or ``batch_size`` is not positive.
  """
  _check_compatible(encoder.config, frontend)
  if len(waveforms) == 0:
    return np.zeros((0, encoder.config.embedding_dim), np.float32)
  patches, owner = clip_patches(waveforms, frontend)
  embeddings = _apply_in_batches(encoder.__call__, patches, batch_size)
  return _clip_means(embeddings, owner).astype(np.float32)


#: Column name of :func:`effective_rank` in the studies' tables.
EFFECTIVE_RANK = "effective rank"
#: Below this :func:`effective_rank` of its clip embeddings an encoder counts
#: as collapsed (:func:`is_collapsed`). Measured on the 1,504 labelled clips
#: of the ``full`` corpus (tiny encoder, temporal_gap, 18 runs per seed):
#: degenerate federated runs with finite weights (FedAdam server lr 0.1 and
#: momentum 0 on seed 1, loss 0 and frozen from mid-run; FedAvg server lr
#: 10, embeddings ~1e11) have 1.80, 1.03 and 1.12; the same FedAdam setting
#: on seed 0 (loss 0 too, but the second-best validation probes of its six)
#: 2.73; random init 10.8 and 14.1, every other trained run 4.5-19.4; random
#: init on the 54 clips of the ``tiny`` corpus 8.6-11.2 (tiny encoder) and
#: 20-27 (small). Partial collapse (a rank well below random init's that
#: still beats it on probes) is not flagged.
COLLAPSE_RANK = 2.5


def effective_rank(embeddings: np.ndarray) -> float:
  """``exp(entropy)`` of the normalized singular values of the centered rows.

  1 for embeddings on a line, ``d`` for isotropic ``d``-dimensional ones; a
  (partially) collapsed encoder has a low value.

  Raises:
    ValueError: Not a 2-D array with at least 2 rows, or a value is not
      finite.
  """
  x = np.asarray(embeddings, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"effective_rank: expected [n >= 2, d] embeddings, got "
                     f"shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"effective_rank: {int(np.sum(~np.isfinite(x)))} "
                     f"non-finite values in the embeddings")
  s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
  if s.sum() <= 0:
    return 0.0
  p = s[s > 0] / s.sum()
  return float(np.exp(-np.sum(p * np.log(p))))


def is_collapsed(embeddings: np.ndarray, *,
                 min_rank: float = COLLAPSE_RANK) -> bool:
  """Whether clip embeddings of an encoder have collapsed.

  Collapsed: their :func:`effective_rank` is below ``min_rank``, i.e. they
  vary along fewer than ~``min_rank`` directions (constant embeddings have
  rank 0). Such an encoder's loss can look fine (0, frozen) while its
  embeddings carry almost nothing.

  Args:
    embeddings: ``[num_clips >= 2, d]`` finite embeddings.
    min_rank: Threshold (default :data:`COLLAPSE_RANK`, chosen by
      measurement).

  Raises:
    ValueError: As :func:`effective_rank`.
  """
  return effective_rank(embeddings) < min_rank


def _labels_and_rows(table: ClipTable, task: str
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Labels of the clips that carry ``task`` and their rows in ``table``."""
  rows = np.asarray([i for i, clip in enumerate(table) if task in clip.labels],
                    np.int64)
  labels = np.asarray([table[i].labels[task] for i in rows], dtype=object)
  return labels, rows


def _task_labels(table: ClipTable, task: str
                 ) -> tuple[np.ndarray, int, np.ndarray]:
  """Labels of ``task``'s clips, their number of classes (>= 2, else a
  ValueError naming the task) and each clip's speaker (``client_id``)."""
  labels, _ = _labels_and_rows(table, task)
  num_classes = len(np.unique(labels))
  if num_classes < 2:
    raise ValueError(f"task {task!r}: needs at least 2 classes, got "
                     f"{num_classes} ({len(labels)} labelled clips)")
  groups = np.asarray([clip.client_id for clip in table.with_label(task)])
  return labels, num_classes, groups


def _split_within_speakers(task: str, labels: np.ndarray, test_fraction: float,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Stratified split; classes with a single clip go to train only."""
  classes, counts = np.unique(labels, return_counts=True)
  repeated = np.isin(labels, classes[counts >= 2])
  candidates = np.flatnonzero(repeated)
  num_repeated = int(np.count_nonzero(counts >= 2))
  if num_repeated < 2:
    raise ValueError(
        f"task {task!r}: a within-speaker split needs at least 2 classes with "
        f"2 or more clips each; got {num_repeated} such classes "
        f"({len(labels)} clips, {len(classes)} classes)")
  try:
    train, test = train_test_split(candidates, test_size=test_fraction,
                                   random_state=seed,
                                   stratify=labels[candidates])
  except ValueError as error:
    raise ValueError(
        f"task {task!r}: cannot split {len(candidates)} clips of "
        f"{num_repeated} classes with test_fraction {test_fraction}: "
        f"{error}") from error
  return np.concatenate([train, np.flatnonzero(~repeated)]), test


def _split_across_speakers(task: str, labels: np.ndarray, groups: np.ndarray,
                           test_fraction: float, seed: int
                           ) -> tuple[np.ndarray, np.ndarray]:
  """Speaker-disjoint split whose test labels occur in train if possible."""
  num_groups = len(np.unique(groups))
  if num_groups < 2:
    raise ValueError(
        f"task {task!r}: a speaker-disjoint split needs clips from at least 2 "
        f"speakers; got {num_groups} speaker(s) ({len(labels)} clips)")
  splitter = GroupShuffleSplit(n_splits=_SPLIT_CANDIDATES,
                               test_size=test_fraction, random_state=seed)
  best = None
  for train, test in splitter.split(labels, groups=groups):
    unseen = int(np.count_nonzero(~np.isin(labels[test], labels[train])))
    if best is None or unseen < best[0]:
      best = (unseen, train, test)
    if unseen == 0:
      break
  return best[1], best[2]


def split_for_task(table: ClipTable, task: str, *, test_fraction: float = 0.3,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Splits the clips labelled for ``task`` into train and test.

  For :data:`SPEAKER_TASK` the clips of every speaker are split (stratified by
  label; a speaker with a single clip goes to train). For every other task
  whole speakers (``client_id``) go to either side, so no speaker is in both;
  among several random speaker splits the first whose test labels all occur
  in train is taken (else the one with the fewest test clips of unseen
  labels). Test clips whose label never occurs in train are dropped (logged).

  Args:
    table: The clips.
    task: Label column.
    test_fraction: Fraction of the clips (speaker task) or of the speakers
      (other tasks) that go to test.
    seed: Seed of the random split.

  Returns:
    Sorted ``(train, test)`` indices into ``table.with_label(task)``.

  Raises:
    ValueError: ``test_fraction`` is not in (0, 1), or the task has fewer
      than 2 classes, too few clips or speakers to split, or leaves fewer
      than 2 classes in train or no test clip; the message names the task
      and the counts.
  """
  if not 0 < test_fraction < 1:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  labels, num_classes, groups = _task_labels(table, task)
  if task == SPEAKER_TASK:
    train, test = _split_within_speakers(task, labels, test_fraction, seed)
  else:
    train, test = _split_across_speakers(task, labels, groups, test_fraction,
                                         seed)
  seen = np.isin(labels[test], labels[train])
  if not seen.all():
    logging.warning("task %r: dropping %d of %d test clips whose label never "
                    "occurs in train", task, np.count_nonzero(~seen), len(test))
  test = test[seen]
  train_classes = len(np.unique(labels[train]))
  if train_classes < 2 or not test.size:
    raise ValueError(
        f"task {task!r}: split of {len(labels)} clips ({num_classes} classes) "
        f"leaves {train_classes} classes in train and {test.size} usable test "
        f"clips; need at least 2 and 1")
  return np.sort(train), np.sort(test)


def validation_split_for_task(table: ClipTable, task: str, *,
                              validation_fraction: float = 0.3,
                              test_fraction: float = 0.3, seed: int = 0
                              ) -> tuple[np.ndarray, np.ndarray]:
  """Carves a validation part out of :func:`split_for_task`'s train part.

  The train clips of ``task`` are split again by :func:`split_for_task`'s
  rules (within speakers for :data:`SPEAKER_TASK`, whole speakers otherwise),
  so choices made on the validation part (learning rates, ...) never see a
  test clip.

  Args:
    table: The clips.
    task: Label column.
    validation_fraction: Fraction of the train clips (speaker task) or train
      speakers (other tasks) that go to validation.
    test_fraction: As in :func:`split_for_task` (the test part left out).
    seed: Seed of both splits.

  Returns:
    Sorted ``(fit, validation)`` indices into ``table.with_label(task)``,
    disjoint from each other and from the test indices of
    :func:`split_for_task` with the same ``test_fraction`` and ``seed``.

  Raises:
    ValueError: As :func:`split_for_task`, for either split.
  """
  train, _ = split_for_task(table, task, test_fraction=test_fraction,
                            seed=seed)
  train_table = table.with_label(task).select(train)
  try:
    fit, validation = split_for_task(train_table, task,
                                     test_fraction=validation_fraction,
                                     seed=seed)
  except ValueError as error:
    raise ValueError(f"task {task!r}: no validation split of its "
                     f"{len(train)} train clips: {error}") from error
  return np.sort(train[fit]), np.sort(train[validation])


def probe_validation(encoder: Encoder, table: ClipTable,
                     waveforms: Sequence[np.ndarray],
                     frontend: FrontendConfig, *, tasks: Sequence[str],
                     validation_fraction: float = 0.3, seed: int = 0,
                     batch_size: int = 256) -> dict[str, float]:
  """Linear-probe accuracy on the validation part of each task's train split.

  For model selection: probes are fitted and scored on
  :func:`validation_split_for_task`'s parts, never on a test clip.

  Args:
    encoder: The encoder (not modified).
    table: The clips.
    waveforms: One waveform per clip of ``table``, in table order.
    frontend: Front-end parameters.
    tasks: Label columns to probe.
    validation_fraction: As in :func:`validation_split_for_task`.
    seed: Seed of the splits (the test split's seed too).
    batch_size: Patches per encoder call.

  Returns:
    Validation accuracy by task.

  Raises:
    ValueError: ``waveforms`` and ``table`` differ in length, or a task
      cannot be split.
  """
  if len(waveforms) != len(table):
    raise ValueError(f"probe_validation: {len(waveforms)} waveforms for a "
                     f"table of {len(table)} clips")
  splits = {task: (*_labels_and_rows(table, task), *validation_split_for_task(
      table, task, validation_fraction=validation_fraction, seed=seed))
            for task in tasks}
  used = np.unique(np.concatenate(
      [rows[np.concatenate([fit, validation])]
       for _, rows, fit, validation in splits.values()] or [[]])
                   ).astype(np.int64)
  embeddings = clip_embeddings(encoder, [waveforms[i] for i in used], frontend,
                               batch_size=batch_size)
  position = {row: i for i, row in enumerate(used)}
  scores = {}
  for task, (labels, rows, fit, validation) in splits.items():
    def x(part: np.ndarray, rows: np.ndarray = rows) -> np.ndarray:
      return embeddings[[position[row] for row in rows[part]]]
    scores[task] = linear_probe(x(fit), labels[fit], x(validation),
                                labels[validation])
  return scores


def _folds_within_speakers(task: str, labels: np.ndarray, folds: int,
                           seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """Stratified k folds; classes with fewer clips than folds train only."""
  classes, counts = np.unique(labels, return_counts=True)
  testable = np.isin(labels, classes[counts >= folds])
  candidates = np.flatnonzero(testable)
  num_testable = int(np.count_nonzero(counts >= folds))
  if num_testable < 2:
    raise ValueError(
        f"task {task!r}: {folds}-fold cross-validation within speakers needs "
        f"at least 2 classes with {folds} or more clips each; got "
        f"{num_testable} such classes ({len(labels)} clips, {len(classes)} "
        f"classes)")
  always_train = np.flatnonzero(~testable)
  splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
  return [(np.concatenate([candidates[train], always_train]),
           candidates[test])
          for train, test in splitter.split(candidates, labels[candidates])]


def _folds_across_speakers(task: str, labels: np.ndarray, groups: np.ndarray,
                           folds: int, seed: int
                           ) -> list[tuple[np.ndarray, np.ndarray]]:
  """Speaker-disjoint k folds, label proportions balanced across folds.

  A class with fewer clips than folds cannot be in every fold's test part;
  it is named in the log and split like the others (its test clips in a
  fold whose train part lacks it are dropped by the caller). sklearn's
  generic warning for it is replaced by that message.
  """
  num_groups = len(np.unique(groups))
  if num_groups < folds:
    raise ValueError(
        f"task {task!r}: {folds}-fold speaker-disjoint cross-validation needs "
        f"clips from at least {folds} speakers; got {num_groups} speaker(s) "
        f"({len(labels)} clips)")
  classes, counts = np.unique(labels, return_counts=True)
  rare = counts < folds
  if rare.all():
    raise ValueError(
        f"task {task!r}: {folds}-fold speaker-disjoint cross-validation needs "
        f"a class with at least {folds} clips; the most frequent of the "
        f"{len(classes)} classes has {counts.max()} ({len(labels)} clips)")
  if rare.any():
    logging.info(
        "task %r: %d of %d classes have fewer clips than the %d folds (%s): "
        "they cannot be in every fold's test part", task,
        int(rare.sum()), len(classes), folds,
        ", ".join(f"{c!r} {n}" for c, n in zip(classes[rare], counts[rare])))
  splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True,
                                  random_state=seed)
  with warnings.catch_warnings():
    # Only the case logged above, by class (sklearn's text names none).
    warnings.filterwarnings(
        "ignore", message="The least populated class in y has only",
        category=UserWarning)
    return list(splitter.split(labels, labels, groups=groups))


def cross_validation_splits(table: ClipTable, task: str, *, folds: int,
                            test_fraction: float = 0.3, seed: int = 0
                            ) -> list[tuple[np.ndarray, np.ndarray]]:
  """The train/test splits a probe of ``task`` is scored on.

  ``folds == 1`` is :func:`split_for_task` (one split). For ``folds > 1``
  every clip labelled for ``task`` is in the test part of exactly one fold:
  for :data:`SPEAKER_TASK` by stratified k-fold within speakers
  (``sklearn`` ``StratifiedKFold``; a speaker with fewer clips than folds is
  in every fold's train part only), for every other task by speaker-disjoint
  k-fold with balanced labels (``StratifiedGroupKFold`` over
  ``client_id``), so no speaker is on both sides of a fold. As in
  :func:`split_for_task`, test clips whose label does not occur in their
  fold's train part are dropped (logged).

  Args:
    table: The clips.
    task: Label column.
    folds: Number of folds (>= 1).
    test_fraction: The single split's test fraction (``folds == 1`` only).
    seed: Seed of the split(s).

  Returns:
    ``(train, test)`` sorted indices into ``table.with_label(task)``, one
    pair per fold.

  Raises:
    ValueError: ``folds`` < 1, or the task has fewer than 2 classes, too few
      speakers or clips for the folds, or a fold leaves fewer than 2 classes
      in train; the message names the task and the counts.
  """
  if folds < 1:
    raise ValueError(f"folds must be >= 1, got {folds}")
  if folds == 1:
    return [split_for_task(table, task, test_fraction=test_fraction,
                           seed=seed)]
  labels, num_classes, groups = _task_labels(table, task)
  if task == SPEAKER_TASK:
    splits = _folds_within_speakers(task, labels, folds, seed)
  else:
    splits = _folds_across_speakers(task, labels, groups, folds, seed)
  result, dropped = [], 0
  for fold, (train, test) in enumerate(splits):
    seen = np.isin(labels[test], labels[train])
    dropped += int(np.count_nonzero(~seen))
    train_classes = len(np.unique(labels[train]))
    if train_classes < 2:
      raise ValueError(
          f"task {task!r}: fold {fold} of {folds} leaves {train_classes} "
          f"class(es) in train ({len(labels)} clips, {num_classes} classes); "
          f"need at least 2")
    result.append((np.sort(train), np.sort(test[seen])))
  if dropped:
    logging.warning("task %r: dropping %d of %d test clips whose label never "
                    "occurs in their fold's train part", task, dropped,
                    len(labels))
  return result


@dataclasses.dataclass(frozen=True)
class NestedFold:
  """One outer fold of nested cross-validation.

  Attributes:
    train: Sorted indices into ``table.with_label(task)`` of the outer train
      part (where choices are made).
    test: Sorted indices of the outer test part (scored only).
    inner: ``(fit, validation)`` index pairs, all inside ``train``.
  """

  train: np.ndarray
  test: np.ndarray
  inner: tuple[tuple[np.ndarray, np.ndarray], ...]


def nested_cross_validation_splits(
    table: ClipTable, task: str, *, folds: int, validation_folds: int,
    validation_fraction: float = 0.3, test_fraction: float = 0.3,
    seed: int = 0) -> list[NestedFold]:
  """Test folds, and validation folds inside each test fold's train part.

  The outer folds are :func:`cross_validation_splits` of ``table`` (``folds``
  of them; 1: :func:`split_for_task`); the inner ones are
  :func:`cross_validation_splits` of each outer train part with
  ``validation_folds`` (1: one split of ``validation_fraction``, as
  :func:`validation_split_for_task`). The same rules hold at both levels:
  whole speakers on either side, except within speakers for
  :data:`SPEAKER_TASK`. A choice made on a fold's inner parts never sees its
  test clips. ``folds == validation_folds == 1`` gives
  :func:`validation_split_for_task`'s parts and :func:`split_for_task`'s
  test.

  Args:
    table: The clips.
    task: Label column.
    folds: Outer (test) folds, >= 1.
    validation_folds: Inner (validation) folds of each outer train part,
      >= 1.
    validation_fraction: The inner single split's fraction
      (``validation_folds == 1`` only).
    test_fraction: The outer single split's fraction (``folds == 1`` only).
    seed: Seed of every split.

  Returns:
    One :class:`NestedFold` per outer fold.

  Raises:
    ValueError: As :func:`cross_validation_splits`, at either level; the
      message names the task and the outer fold.
  """
  outer = cross_validation_splits(table, task, folds=folds,
                                  test_fraction=test_fraction, seed=seed)
  labelled = table.with_label(task)
  result = []
  for fold, (train, test) in enumerate(outer):
    try:
      inner = cross_validation_splits(
          labelled.select(train), task, folds=validation_folds,
          test_fraction=validation_fraction, seed=seed)
    except ValueError as error:
      raise ValueError(f"task {task!r}: no validation split of the "
                       f"{len(train)} train clips of test fold {fold}: "
                       f"{error}") from error
    result.append(NestedFold(train=train, test=test, inner=tuple(
        (train[fit], train[validation]) for fit, validation in inner)))
  return result


@dataclasses.dataclass(frozen=True)
class NestedSelection:
  """Candidates chosen on validation folds, scored on the test folds.

  Attributes:
    picks: The candidate chosen in each outer fold.
    validation: Per candidate and task, the linear-probe accuracy pooled over
      the validation predictions of every outer fold.
    accuracy: Test accuracy by task, pooled over the outer folds, each fold
      scored with its own pick.
    num_test: Test predictions by task (over all outer folds).
    stderr: :func:`binomial_stderr` of each test accuracy.
  """

  picks: tuple[str, ...]
  validation: dict[str, dict[str, float]]
  accuracy: dict[str, float]
  num_test: dict[str, int]
  stderr: dict[str, float]

  def times_picked(self, name: str) -> int:
    """Outer folds in which candidate ``name`` was chosen."""
    return self.picks.count(name)

  @property
  def most_picked(self) -> str:
    """The candidate chosen in most outer folds (on ties, the one chosen
    in the earliest fold)."""
    return max(dict.fromkeys(self.picks), key=self.times_picked)


def nested_probe_selection(candidates: Mapping[str, np.ndarray],
                           rows: np.ndarray, table: ClipTable, *,
                           tasks: Sequence[str], folds: int,
                           validation_folds: int,
                           validation_fraction: float = 0.3,
                           test_fraction: float = 0.3,
                           seed: int = 0) -> NestedSelection:
  """Model choice by nested cross-validation of linear probes.

  In every outer fold of :func:`nested_cross_validation_splits` (the same
  folds for every candidate), each candidate's probes are fitted and scored
  on the inner folds of the outer train part; the candidate with the best
  mean over ``tasks`` of the pooled validation accuracy is chosen (the
  earliest on ties) and scored on that fold's test part. Test predictions
  are pooled over the outer folds. Only embeddings are needed, so the
  candidates are embedded once each.

  Args:
    candidates: Per candidate name (in order of preference on ties), its
      ``[len(rows), d]`` clip features.
    rows: Row of ``table`` of each embedding.
    table: The clips.
    tasks: Label columns probed (all of them drive the choice).
    folds: Outer (test) folds.
    validation_folds: Inner (validation) folds.
    validation_fraction: As in :func:`nested_cross_validation_splits`.
    test_fraction: As in :func:`nested_cross_validation_splits`.
    seed: Seed of every split.

  Returns:
    The picks, every candidate's validation scores and the test scores.

  Raises:
    ValueError: No candidate or task, embeddings that do not match ``rows``,
      a labelled clip without an embedding, or a task that cannot be split.
  """
  if not candidates or not tasks:
    raise ValueError(f"nested_probe_selection: need candidates and tasks, "
                     f"got {list(candidates)} and {list(tasks)}")
  rows = np.asarray(rows, np.int64)
  position = np.full(len(table), -1, np.int64)
  position[rows] = np.arange(len(rows))
  data = {}
  for task in tasks:
    labels, task_rows = _labels_and_rows(table, task)
    missing = task_rows[position[task_rows] < 0]
    if len(missing):
      raise ValueError(f"nested_probe_selection: clip "
                       f"{table[int(missing[0])].path} has a {task!r} label "
                       f"but no embedding")
    data[task] = (labels, position[task_rows], nested_cross_validation_splits(
        table, task, folds=folds, validation_folds=validation_folds,
        validation_fraction=validation_fraction, test_fraction=test_fraction,
        seed=seed))
  for name, embeddings in candidates.items():
    if len(embeddings) != len(rows):
      raise ValueError(f"nested_probe_selection: candidate {name!r} has "
                       f"{len(embeddings)} embeddings for {len(rows)} rows")
  # counts[name][task][fold] = (correct, total) over the fold's inner parts.
  counts = {name: {task: [_probe_counts(embeddings[at], labels, fold.inner)
                          for fold in nested]
                   for task, (labels, at, nested) in data.items()}
            for name, embeddings in candidates.items()}
  names = list(candidates)
  picks = []
  for fold in range(folds):
    means = np.nan_to_num([np.mean([_ratio(*counts[name][task][fold])
                                    for task in tasks]) for name in names],
                          nan=-np.inf)
    picks.append(names[int(np.argmax(means))])
  validation = {name: {task: _ratio(*np.sum(per_fold, axis=0))
                       for task, per_fold in by_task.items()}
                for name, by_task in counts.items()}
  accuracy, num_test, stderr = {}, {}, {}
  for task, (labels, at, nested) in data.items():
    correct = total = 0
    for fold, pick in zip(nested, picks):
      c, n = _probe_counts(candidates[pick][at], labels,
                           [(fold.train, fold.test)])
      correct, total = correct + c, total + n
    if not total:
      raise ValueError(f"nested_probe_selection: task {task!r} has no test "
                       f"prediction in any fold")
    accuracy[task], num_test[task] = correct / total, total
    stderr[task] = binomial_stderr(accuracy[task], total)
  return NestedSelection(picks=tuple(picks), validation=validation,
                         accuracy=accuracy, num_test=num_test, stderr=stderr)


def _ratio(correct: float, total: float) -> float:
  """``correct / total``; NaN without predictions."""
  return float(correct / total) if total else math.nan


def binomial_stderr(accuracy: float, num_predictions: int) -> float:
  """Standard error of an accuracy over independent predictions.

  ``sqrt(p (1 - p) / n)``; NaN when ``n`` is 0. Clips of one speaker are not
  independent, so this is a lower bound on the spread between splits.
  """
  if num_predictions <= 0:
    return math.nan
  return math.sqrt(accuracy * (1.0 - accuracy) / num_predictions)


def _probe_predictions(train_x: np.ndarray, train_y: np.ndarray,
                       test_x: np.ndarray) -> np.ndarray:
  """Predictions of a standardized logistic regression fitted on train."""
  probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
  probe.fit(train_x, train_y)
  return probe.predict(test_x)


def pooled_probe(x: np.ndarray, y: np.ndarray,
                 splits: Sequence[tuple[np.ndarray, np.ndarray]]
                 ) -> tuple[float, int]:
  """Linear-probe accuracy pooled over the test predictions of all splits.

  Args:
    x: ``[n, dim]`` features.
    y: ``[n]`` labels.
    splits: ``(train, test)`` index pairs into ``x``, as from
      :func:`cross_validation_splits`.

  Returns:
    ``(accuracy, num_predictions)``: the fraction of correct test
    predictions over all splits together, and their number.

  Raises:
    ValueError: No split has a test index.
  """
  correct, total = _probe_counts(x, y, splits)
  if not total:
    raise ValueError("pooled_probe: no test predictions in any split")
  return correct / total, total


def _probe_counts(x: np.ndarray, y: np.ndarray,
                  splits: Sequence[tuple[np.ndarray, np.ndarray]]
                  ) -> tuple[int, int]:
  """Correct and total test predictions of a probe per split, summed."""
  y = np.asarray(y)
  correct = total = 0
  for train, test in splits:
    if not len(test):
      continue
    predicted = _probe_predictions(x[train], y[train], x[test])
    correct += int(np.count_nonzero(predicted == y[test]))
    total += len(test)
  return correct, total


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray) -> float:
  """Accuracy of a standardized logistic regression on fixed embeddings.

  Args:
    train_x: ``[n_train, dim]`` training embeddings.
    train_y: ``[n_train]`` training labels (any comparable type).
    test_x: ``[n_test, dim]`` test embeddings.
    test_y: ``[n_test]`` test labels.

  Returns:
    Test accuracy in [0, 1].
  """
  return float(np.mean(_probe_predictions(train_x, train_y, test_x)
                       == np.asarray(test_y)))


def retrieval_map(embeddings: np.ndarray, labels: Sequence, *,
                  k: int = 10) -> dict[str, float]:
  """Same-label retrieval quality under cosine similarity.

  Every clip queries all others (itself excluded), ranked by cosine
  similarity; the relevant ones share its label.

  Args:
    embeddings: ``[n, dim]``.
    labels: ``[n]`` labels.
    k: Cut-off of the precision.

  Returns:
    ``{"map": ..., f"precision@{k}": ...}``: the mean average precision over
    the queries that have at least one relevant clip, and the mean fraction
    of relevant clips among each query's top ``min(k, n - 1)``, over all
    queries.

  Raises:
    ValueError: Shapes disagree, ``k`` is not positive, there are fewer than
      2 clips, or no label occurs twice.
  """
  embeddings = np.asarray(embeddings, np.float32)
  labels = np.asarray(labels)
  n = len(embeddings)
  if embeddings.ndim != 2 or labels.shape != (n,):
    raise ValueError(f"retrieval_map: need embeddings [n, dim] and labels [n], "
                     f"got {embeddings.shape} and {labels.shape}")
  if k <= 0:
    raise ValueError(f"retrieval_map: k must be positive, got {k}")
  if n < 2:
    raise ValueError(f"retrieval_map: need at least 2 clips, got {n}")
  unit = normalize(embeddings)
  _, codes = np.unique(labels, return_inverse=True)
  cutoff = min(k, n - 1)
  ranks = np.arange(1, n)
  average_precisions, precisions = [], []
  for start in range(0, n, _RETRIEVAL_CHUNK):
    queries = np.arange(start, min(start + _RETRIEVAL_CHUNK, n))
    similarity = unit[queries] @ unit.T
    similarity[np.arange(len(queries)), queries] = -np.inf
    # The query itself ranks last; drop it.
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :-1]
    relevant = codes[order] == codes[queries, np.newaxis]
    hits = np.cumsum(relevant, axis=1)
    num_relevant = hits[:, -1]
    valid = num_relevant > 0
    average_precisions.append(
        np.sum(relevant[valid] * hits[valid] / ranks, axis=1)
        / num_relevant[valid])
    precisions.append(hits[:, cutoff - 1] / cutoff)
  average_precisions = np.concatenate(average_precisions)
  if not average_precisions.size:
    raise ValueError(f"retrieval_map: no label of the {n} clips occurs twice")
  return {"map": float(np.mean(average_precisions)),
          f"precision@{k}": float(np.mean(np.concatenate(precisions)))}


@dataclasses.dataclass(frozen=True)
class ProbeResult:
  """Frozen-encoder quality on the downstream tasks.

  Attributes:
    accuracy: Linear-probe test accuracy by task (pooled over the folds).
    num_train: Training clips by task (of the first fold).
    num_test: Test predictions by task (over all folds).
    retrieval_task: Label column used for retrieval (None if skipped).
    retrieval: :func:`retrieval_map`'s scores (empty if skipped).
    folds: Cross-validation folds of the probes (1: one split).
    stderr: Binomial standard error of each accuracy
      (:func:`binomial_stderr`).
  """

  accuracy: dict[str, float]
  num_train: dict[str, int]
  num_test: dict[str, int]
  retrieval_task: Optional[str] = None
  retrieval: dict[str, float] = dataclasses.field(default_factory=dict)
  folds: int = 1
  stderr: dict[str, float] = dataclasses.field(default_factory=dict)

  def as_dict(self) -> dict[str, float]:
    """Accuracies by task plus ``retrieval_<score>``, e.g. ``retrieval_map``."""
    return {**self.accuracy,
            **{f"retrieval_{name}": v for name, v in self.retrieval.items()}}


def default_tasks(table: ClipTable) -> tuple[str, ...]:
  """Label columns of ``table`` with at least 2 distinct values (sorted)."""
  return tuple(task for task in table.label_columns
               if len(set(table.with_label(task).labels_of(task))) >= 2)


def probe_encoder(encoder: Encoder, table: ClipTable,
                  waveforms: Sequence[np.ndarray], frontend: FrontendConfig, *,
                  tasks: Optional[Sequence[str]] = None,
                  retrieval_task: Optional[str] = "keyword",
                  test_fraction: float = 0.3, seed: int = 0,
                  batch_size: int = 256, probe_folds: int = 1) -> ProbeResult:
  """Linear probes and retrieval on frozen clip embeddings.

  Embeddings are computed once, for every clip that has any label.

  Args:
    encoder: The encoder (not modified).
    table: The clips.
    waveforms: One waveform per clip of ``table``, in table order.
    frontend: Front-end parameters.
    tasks: Label columns to probe; default :func:`default_tasks`, skipping
      (with a warning) those too small to split.
    retrieval_task: Label column scored by :func:`retrieval_map` (None: no
      retrieval). Skipped, with a warning, if it has fewer than 2 classes.
    test_fraction: As in :func:`split_for_task`.
    seed: Seed of the splits.
    batch_size: Patches per encoder call.
    probe_folds: 1: one train/test split per task; k > 1: k-fold
      cross-validation (see :func:`cross_validation_splits`), every labelled
      clip tested once.

  Returns:
    The scores.

  Raises:
    ValueError: ``waveforms`` and ``table`` differ in length, or a task
      cannot be split (see :func:`cross_validation_splits`).
  """
  if len(waveforms) != len(table):
    raise ValueError(f"probe_encoder: {len(waveforms)} waveforms for a table "
                     f"of {len(table)} clips")
  labelled = np.flatnonzero([bool(clip.labels) for clip in table])
  embeddings = clip_embeddings(encoder, [waveforms[i] for i in labelled],
                               frontend, batch_size=batch_size)
  return probe_embeddings(embeddings, labelled, table, tasks=tasks,
                          retrieval_task=retrieval_task,
                          test_fraction=test_fraction, seed=seed,
                          probe_folds=probe_folds)


def probe_embeddings(embeddings: np.ndarray, rows: np.ndarray,
                     table: ClipTable, *,
                     tasks: Optional[Sequence[str]] = None,
                     retrieval_task: Optional[str] = "keyword",
                     test_fraction: float = 0.3, seed: int = 0,
                     probe_folds: int = 1) -> ProbeResult:
  """Linear probes and retrieval on given clip features.

  Args:
    embeddings: ``[len(rows), d]`` features of the clips ``rows`` of
      ``table`` (every clip that carries a probed label must be among them).
    rows: Row of ``table`` of each embedding.
    table: The clips.
    tasks: As in :func:`probe_encoder`.
    retrieval_task: As in :func:`probe_encoder`.
    test_fraction: As in :func:`split_for_task`.
    seed: Seed of the splits.
    probe_folds: As in :func:`probe_encoder`.

  Returns:
    The scores.

  Raises:
    ValueError: ``embeddings`` and ``rows`` differ in length, a labelled clip
      has no embedding, or a task cannot be split.
  """
  rows = np.asarray(rows, np.int64)
  if len(embeddings) != len(rows):
    raise ValueError(f"probe_embeddings: {len(embeddings)} embeddings for "
                     f"{len(rows)} rows")
  position = np.full(len(table), -1, np.int64)
  position[rows] = np.arange(len(rows))
  accuracy, num_train, num_test, stderr = {}, {}, {}, {}

  def features(task_rows: np.ndarray) -> np.ndarray:
    missing = task_rows[position[task_rows] < 0]
    if len(missing):
      raise ValueError(f"probe_embeddings: clip {table[int(missing[0])].path}"
                       f" has a label but no embedding")
    return embeddings[position[task_rows]]

  for task in default_tasks(table) if tasks is None else tasks:
    labels, task_rows = _labels_and_rows(table, task)
    x = features(task_rows)
    try:
      splits = cross_validation_splits(table, task, folds=probe_folds,
                                       test_fraction=test_fraction, seed=seed)
    except ValueError as e:
      if tasks is not None:
        raise
      logging.warning("skipping downstream task %r: %s", task, e)
      continue
    accuracy[task], num_test[task] = pooled_probe(x, labels, splits)
    num_train[task] = len(splits[0][0])
    stderr[task] = binomial_stderr(accuracy[task], num_test[task])
  retrieval = {}
  if retrieval_task is not None:
    labels, task_rows = _labels_and_rows(table, retrieval_task)
    if len(np.unique(labels)) >= 2:
      retrieval = retrieval_map(features(task_rows), labels)
    else:
      logging.warning("retrieval task %r has fewer than 2 classes in %s; "
                      "skipping retrieval", retrieval_task, table.name)
      retrieval_task = None
  return ProbeResult(accuracy=accuracy, num_train=num_train, num_test=num_test,
                     retrieval_task=retrieval_task, retrieval=retrieval,
                     folds=probe_folds, stderr=stderr)


def logmel_statistics(waveforms: Sequence[np.ndarray],
                      frontend: FrontendConfig) -> np.ndarray:
  """The non-learned baseline: mean and std of each mel bin over the clip.

  Args:
    waveforms: 1-D float waveforms at ``frontend.sample_rate``.
    frontend: Front-end parameters (the same log-mel the encoders see).

  Returns:
    float32 ``[num_clips, 2 * num_mel_bins]``: per-bin means, then stds.
  """
  compute = _logmel_function(frontend)
  rows = []
  for waveform in _padded_waveforms(waveforms, frontend, "logmel_statistics"):
    frames = compute(waveform).numpy()
    rows.append(np.concatenate([frames.mean(axis=0), frames.std(axis=0)]))
  if not rows:
    return np.zeros((0, 2 * frontend.num_mel_bins), np.float32)
  return np.stack(rows).astype(np.float32)


def evaluate_logmel_baseline(table: ClipTable,
                             waveforms: Sequence[np.ndarray],
                             frontend: FrontendConfig, *,
                             tasks: Optional[Sequence[str]] = None,
                             retrieval_task: Optional[str] = "keyword",
                             seed: int = 0,
                             probe_folds: int = 1) -> dict[str, float]:
  """:func:`evaluate_encoder`'s scores for :func:`logmel_statistics`.

  The row every quality table carries so that a reader can tell whether
  pre-training beats plain features (same probe, same splits;
  ``probe_folds`` as in :func:`probe_encoder`). :func:`probe_embeddings` of
  :func:`logmel_statistics` gives the counts and standard errors too.
  """
  if len(waveforms) != len(table):
    raise ValueError(f"evaluate_logmel_baseline: {len(waveforms)} waveforms "
                     f"for a table of {len(table)} clips")
  labelled = np.flatnonzero([bool(clip.labels) for clip in table])
  features = logmel_statistics([waveforms[i] for i in labelled], frontend)
  return probe_embeddings(features, labelled, table, tasks=tasks,
                          retrieval_task=retrieval_task, seed=seed,
                          probe_folds=probe_folds).as_dict()


#: Row name of the non-learned baseline in quality tables.
LOGMEL_BASELINE = "log-mel mean+std (no learning)"


def evaluate_encoder(encoder: Encoder, table: ClipTable,
                     waveforms: Sequence[np.ndarray], frontend: FrontendConfig,
                     *, tasks: Optional[Sequence[str]] = None,
                     retrieval_task: Optional[str] = "keyword",
                     seed: int = 0, probe_folds: int = 1) -> dict[str, float]:
  """Flat scores of :func:`probe_encoder`, e.g. ``{"keyword": 0.83, ...}``.

  Args:
    encoder: The encoder (not modified).
    table: The clips.
    waveforms: One waveform per clip of ``table``, in table order.
    frontend: Front-end parameters.
    tasks: Label columns to probe; default :func:`default_tasks`.
    retrieval_task: Label column for retrieval (None: none).
    seed: Seed of the splits.
    probe_folds: As in :func:`probe_encoder`.

  Returns:
    Probe accuracy by task, plus ``retrieval_map`` and
    ``retrieval_precision@10`` when retrieval ran.

  Raises:
    ValueError: As :func:`probe_encoder`.
  """
  return probe_encoder(encoder, table, waveforms, frontend, tasks=tasks,
                       retrieval_task=retrieval_task, seed=seed,
                       probe_folds=probe_folds).as_dict()


class Classifier(tf.Module):
  """An encoder with a linear softmax head: patches -> class logits."""

  def __init__(self, encoder: Encoder, num_classes: int, *, seed: int = 0):
    """Builds the classifier.

    Args:
      encoder: The encoder (used as is, not copied).
      num_classes: Output classes.
      seed: Seed of the head's initial weights.
    """
    super().__init__(name="classifier")
    self.encoder = encoder
    self.head = MLPHead((encoder.config.embedding_dim, num_classes),
                        rng=np.random.default_rng(seed), name="classifier_head")

  def __call__(self, patches: tf.Tensor) -> tf.Tensor:
    """``[n, patch_frames, num_mel_bins]`` -> ``[n, num_classes]`` logits."""
    return self.head(self.encoder(patches))

  def predict_proba(self, patches: np.ndarray, owner: np.ndarray, *,
                    batch_size: int = 256) -> np.ndarray:
    """Class probabilities of clips: the softmax averaged over their patches.

    Args:
      patches: ``[num_patches, patch_frames, num_mel_bins]``.
      owner: Clip index of each patch, as from :func:`clip_patches`.
      batch_size: Patches per call.

    Returns:
      ``[num_clips, num_classes]``.
    """
    probabilities = _apply_in_batches(lambda x: tf.nn.softmax(self(x)),
                                      patches, batch_size)
    return _clip_means(probabilities, owner)

  def predict(self, patches: np.ndarray, owner: np.ndarray, *,
              batch_size: int = 256) -> np.ndarray:
    """Most probable class index of each clip (see :meth:`predict_proba`)."""
    return np.argmax(self.predict_proba(patches, owner, batch_size=batch_size),
                     axis=1)


def _copy_encoder(encoder: Encoder) -> Encoder:
  """A new encoder with the same configuration and copied weight values."""
  copy = Encoder(encoder.config)
  for target, source in zip(copy.weights, encoder.weights):
    target.assign(source)
  return copy


def _trainable_variables(classifier: Classifier,
                         trainable_blocks: Optional[int]) -> list[tf.Variable]:
  """The head plus all encoder weights, or the top ``trainable_blocks``."""
  encoder = classifier.encoder
  if trainable_blocks is None:
    return encoder.weights + classifier.head.weights
  num_blocks = len(encoder.config.channels)
  if not 0 <= trainable_blocks <= num_blocks:
    raise ValueError(f"trainable_blocks must be in [0, {num_blocks}] or None, "
                     f"got {trainable_blocks}")
  unfrozen = {"embedding"} | {f"block{i}" for i in
                              range(num_blocks - trainable_blocks, num_blocks)}
  # Weight names are "<prefix>/<layer>/...", the layer "block<i>" or
  # "embedding".
  return [variable for name, variable
          in zip(encoder.weight_names, encoder.weights)
          if name.removeprefix(f"{encoder.prefix}/").split("/")[0] in unfrozen
          ] + classifier.head.weights


def train_classifier(encoder: Encoder, patches: np.ndarray, labels: np.ndarray,
                     num_classes: int, *, trainable_blocks: Optional[int],
                     steps: int, batch_size: int = 64,
                     learning_rate: float = 1e-3,
                     seed: int = 0) -> tuple[Classifier, np.ndarray]:
  """Trains a linear softmax head on a copy of ``encoder`` with Adam.

  Every patch is one training example carrying its clip's label.

  Args:
    encoder: Initial encoder; its weights are copied, never modified. Pass a
      fresh ``Encoder(config, seed=...)`` for a supervised baseline.
    patches: float32 ``[n, patch_frames, num_mel_bins]``.
    labels: int ``[n]`` class indices in ``[0, num_classes)``.
    num_classes: Output classes.
    trainable_blocks: None trains the whole encoder; ``k`` trains only the
      embedding layer and the last ``k`` conv blocks (0: the embedding layer
      only). The head is always trained.
    steps: Optimizer steps.
    batch_size: Patches per step (at most ``n``).
    learning_rate: Adam step size.
    seed: Seed of the head's initial weights and the batch order.

  Returns:
    The trained classifier and its per-step training loss ``[steps]``.

  Raises:
    ValueError: Shapes or labels are invalid, ``steps`` or ``batch_size`` is
      not positive, or ``trainable_blocks`` is out of range.
  """
  patches = np.asarray(patches, np.float32)
  labels = np.asarray(labels)
  config = encoder.config
  if patches.ndim != 3 or (labels.shape != (len(patches),)) or not len(
      patches):
    raise ValueError(
        f"train_classifier: need patches [n > 0, frames, bins] and labels "
        f"[n], got {patches.shape} and {labels.shape}")
  config.check_patch_shape(patches.shape[1:],
                           source="train_classifier: patches")
  expected = patches.shape[1:]
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"train_classifier: labels must be integers, got "
                     f"{labels.dtype}")
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"train_classifier: labels must be integers in "
                     f"[0, {num_classes}), got values in "
                     f"[{labels.min()}, {labels.max()}]")
  if steps <= 0 or batch_size <= 0:
    raise ValueError(f"train_classifier: steps and batch_size must be "
                     f"positive, got {steps} and {batch_size}")
  classifier = Classifier(_copy_encoder(encoder), num_classes, seed=seed)
  variables = _trainable_variables(classifier, trainable_blocks)
  optimizer = tf.keras.optimizers.Adam(learning_rate)
  optimizer.build(variables)
  batch_size = min(batch_size, len(patches))

  @tf.function(input_signature=[
      tf.TensorSpec([batch_size, *expected], tf.float32),
      tf.TensorSpec([batch_size], tf.int32)])
  def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=y, logits=classifier(x)))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  batches = (tf.data.Dataset.from_tensor_slices((patches,
                                                 labels.astype(np.int32)))
             .shuffle(len(patches), seed=seed).repeat()
             .batch(batch_size, drop_remainder=True).take(steps))
  losses = [float(train_step(x, y)) for x, y in batches]
  return classifier, np.asarray(losses, np.float32)


def _train_and_test(encoder: Encoder, trainable_blocks: Optional[int],
                    table: ClipTable, waveforms: Sequence[np.ndarray],
                    frontend: FrontendConfig, task: str,
                    split: tuple[np.ndarray, np.ndarray], *, steps: int,
                    batch_size: int, learning_rate: float, seed: int) -> float:
  """Trains on the split's train clips; returns clip accuracy on its test."""
  _check_compatible(encoder.config, frontend)
  if len(waveforms) != len(table):
    raise ValueError(f"{len(waveforms)} waveforms for a table of {len(table)} "
                     f"clips")
  labels, rows = _labels_and_rows(table, task)
  train, test = (np.asarray(indices, np.int64) for indices in split)
  classes = np.unique(labels[train])
  patches, owner = clip_patches([waveforms[rows[i]] for i in train], frontend)
  classifier, _ = train_classifier(
      encoder, patches, np.searchsorted(classes, labels[train])[owner],
      len(classes), trainable_blocks=trainable_blocks, steps=steps,
      batch_size=batch_size, learning_rate=learning_rate, seed=seed)
  patches, owner = clip_patches([waveforms[rows[i]] for i in test], frontend)
  predicted = classes[classifier.predict(patches, owner)]
  return float(np.mean(predicted == labels[test]))


def supervised_baseline(config: EncoderConfig, table: ClipTable,
                        waveforms: Sequence[np.ndarray],
                        frontend: FrontendConfig, task: str,
                        split: tuple[np.ndarray, np.ndarray], *,
                        steps: int = 1000, batch_size: int = 64,
                        learning_rate: float = 1e-3, seed: int = 0) -> float:
  """Test accuracy of an encoder trained from scratch with labels.

  Args:
    config: Encoder architecture; weights start from ``Encoder(config,
      seed=seed)``.
    table: The clips.
    waveforms: One waveform per clip of ``table``, in table order.
    frontend: Front-end parameters.
    task: Label column.
    split: ``(train, test)`` indices into ``table.with_label(task)``, as from
      :func:`split_for_task`.
    steps: Optimizer steps.
    batch_size: Patches per step.
    learning_rate: Adam step size.
    seed: Seed of the initial weights and the batch order.

  Returns:
    Clip accuracy on the test clips (a test label unseen in train counts as
    wrong).

  Raises:
    ValueError: The inputs do not match (see :func:`train_classifier`).
  """
  return _train_and_test(Encoder(config, seed=seed), None, table, waveforms,
                         frontend, task, split, steps=steps,
                         batch_size=batch_size, learning_rate=learning_rate,
                         seed=seed)


def fine_tune(encoder: Encoder, table: ClipTable,
              waveforms: Sequence[np.ndarray], frontend: FrontendConfig,
              task: str, split: tuple[np.ndarray, np.ndarray], *,
              trainable_blocks: int = 1, steps: int = 1000,
              batch_size: int = 64, learning_rate: float = 1e-3,
              seed: int = 0) -> float:
  """Test accuracy after fine-tuning the top of a copy of ``encoder``.

  Args:
    encoder: Pre-trained encoder (not modified).
    table: The clips.
    waveforms: One waveform per clip of ``table``, in table order.
    frontend: Front-end parameters.
    task: Label column.
    split: ``(train, test)`` indices into ``table.with_label(task)``, as from
      :func:`split_for_task`.
    trainable_blocks: Conv blocks unfrozen from the top, besides the
      embedding layer and the head (see :func:`train_classifier`).
    steps: Optimizer steps.
    batch_size: Patches per step.
    learning_rate: Adam step size.
    seed: Seed of the head's initial weights and the batch order.

  Returns:
    Clip accuracy on the test clips (a test label unseen in train counts as
    wrong).

  Raises:
    ValueError: The inputs do not match (see :func:`train_classifier`).
  """
  return _train_and_test(encoder, trainable_blocks, table, waveforms, frontend,
                         task, split, steps=steps, batch_size=batch_size,
                         learning_rate=learning_rate, seed=seed)


def gap_recovered(probe_acc: float, finetune_acc: float, supervised_acc: float,
                  *, tolerance: float = 1e-6) -> float:
  """Fraction of the probe-to-supervised gap that fine-tuning recovers.

  Args:
    probe_acc: Linear-probe accuracy of the frozen encoder.
    finetune_acc: Accuracy after fine-tuning.
    supervised_acc: Accuracy of the supervised baseline.
    tolerance: Gaps smaller than this in magnitude give NaN.

  Returns:
    ``(finetune - probe) / (supervised - probe)``; NaN if an input is NaN or
    the gap is below ``tolerance``.
  """
  gap = supervised_acc - probe_acc
  if not math.isfinite(gap) or abs(gap) < tolerance:
    return math.nan
  return (finetune_acc - probe_acc) / gap


def _columns(rows: Mapping[str, Mapping[str, float]]) -> list[str]:
  """Column names in order of first appearance; ValueError if none."""
  columns = list(dict.fromkeys(c for values in rows.values() for c in values))
  if not columns:
    raise ValueError("quality table has no rows or no columns")
  return columns


def _make_parent(path: str) -> None:
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)


def plot_quality_table(rows: Mapping[str, Mapping[str, float]], path: str, *,
                       title: str = "Downstream quality",
                       ylabel: str = "accuracy",
                       errors: Optional[Mapping[str, Mapping[str, float]]]
                       = None, goal: Optional[float] = None) -> Figure:
  """Grouped bar chart, one group per column and one bar per row, as PNG.

  Args:
    rows: Scores by column (e.g. task) by row (e.g. model); missing scores
      leave a gap.
    path: Output PNG (parent directories are created).
    title: Chart title.
    ylabel: Y-axis label.
    errors: Optional error-bar half-lengths (e.g. standard errors), shaped
      like ``rows``; missing ones draw no bar.
    goal: Optional target score, drawn as a dashed horizontal line.

  Returns:
    The figure (already saved).

  Raises:
    ValueError: ``rows`` has no rows or no columns.
  """
  columns = _columns(rows)
  errors = errors or {}
  positions = np.arange(len(columns))
  width = 0.8 / len(rows)
  figure = Figure(figsize=(max(6.0, 0.4 * len(rows) * len(columns) + 2), 4.0),
                  layout="constrained")
  axes = figure.subplots()
  for i, (name, values) in enumerate(rows.items()):
    axes.bar(positions + (i - (len(rows) - 1) / 2) * width,
             [values.get(column, np.nan) for column in columns], width,
             yerr=[errors.get(name, {}).get(column, np.nan)
                   for column in columns] if name in errors else None,
             capsize=2, label=name)
  if goal is not None:
    axes.axhline(goal, color="black", linestyle="--", linewidth=1,
                 label=f"goal {goal:g}")
  axes.set_xticks(positions, columns)
  axes.set_ylabel(ylabel)
  axes.set_title(title)
  axes.grid(axis="y", alpha=0.3)
  # Outside the axes, right of them: a legend inside covers bars of wide
  # charts; the constrained layout makes room for it.
  axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)
  _make_parent(path)
  figure.savefig(path, dpi=120, format="png")
  return figure


def format_markdown_table(rows: Mapping[str, Mapping[str, float]], *,
                          digits: int = 3) -> str:
  """A Markdown table: one line per row, one column per score.

  Args:
    rows: Scores by column by row name; missing scores print as ``-``.
    digits: Decimals printed.

  Returns:
    The table, lines joined by newlines.

  Raises:
    ValueError: ``rows`` has no rows or no columns.
  """
  columns = _columns(rows)
  lines = ["| model | " + " | ".join(columns) + " |",
           "|---|" + "---:|" * len(columns)]
  for name, values in rows.items():
    cells = [f"{values[c]:.{digits}f}" if c in values else "-"
             for c in columns]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_csv(rows: Mapping[str, Mapping[str, float]], path: str) -> None:
  """Writes ``model,<column>...`` CSV, one line per row (missing: empty).

  Args:
    rows: Scores by column by row name.
    path: Output file (parent directories are created).

  Raises:
    ValueError: ``rows`` has no rows or no columns.
  """
  columns = _columns(rows)
  _make_parent(path)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["model", *columns])
    for name, values in rows.items():
      writer.writerow([name, *(values.get(c, "") for c in columns)])
