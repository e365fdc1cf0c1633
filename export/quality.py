"""Downstream quality of exported embed models: linear probes on clips."""

from __future__ import annotations

import dataclasses
from absl import logging
import numpy as np

from model import evaluation
from model.datasets.clips import ClipTable

__all__ = ["ProbeScores", "clip_means", "probe_accuracies"]


@dataclasses.dataclass(frozen=True)
class ProbeScores:
  """Linear-probe accuracy per downstream task.

  Attributes:
    accuracy: Test accuracy by task (label column).
    skipped: Tasks that could not be split, with the reason.
  """

  accuracy: dict[str, float]
  skipped: dict[str, str]


def clip_means(embeddings: np.ndarray, owner: np.ndarray) -> np.ndarray:
  """Mean patch embedding of every clip.

  Args:
    embeddings: ``[num_patches, d]``.
    owner: int ``[num_patches]`` clip index of each patch (non-decreasing,
      every clip present).

  Returns:
    float32 ``[num_clips, d]``.
  """
  counts = np.bincount(owner)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  return (np.add.reduceat(embeddings, starts, axis=0)
          / counts[:, np.newaxis]).astype(np.float32)


def probe_accuracies(embeddings: np.ndarray, table: ClipTable, *,
                     seed: int = 0) -> ProbeScores:
  """Linear-probe accuracy on every built-in downstream task of ``table``.

  Tasks are ``model.evaluation.default_tasks``; each is split with
  ``model.evaluation.split_for_task`` (speaker-disjoint except for the
  speaker task) and scored with ``model.evaluation.linear_probe``. A task
  that cannot be split (too few clips or speakers) is skipped.

  Args:
    embeddings: ``[num_clips, d]``, one row per clip of ``table``.
    table: The clips with their labels.
    seed: Seed of the splits (use the same one for every compared model).

  Returns:
    The scores.
  """
  accuracy, skipped = {}, {}
  for task in evaluation.default_tasks(table):
    rows = np.asarray([i for i, clip in enumerate(table)
                       if task in clip.labels])
    labels = np.asarray(table.with_label(task).labels_of(task), dtype=object)
    try:
      train, test = evaluation.split_for_task(table, task, seed=seed)
    except ValueError as e:
      logging.warning("probe: skipping task %r: %s", task, e)
      skipped[task] = str(e)
      continue
    x = embeddings[rows]
    accuracy[task] = evaluation.linear_probe(x[train], labels[train],
                                             x[test], labels[test])
  return ProbeScores(accuracy=accuracy, skipped=skipped)
