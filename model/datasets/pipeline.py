"""Fixed-length training examples from decoded clips, and their tf.data input.

Every SSL task consumes waveforms of exactly ``S`` samples
(``ModelSpec.example_samples``); this module cuts clips into such segments
by one policy (:class:`SegmentPolicy`, :func:`training_segments`), used by
centralized training, the federated simulation and every study, so that they
all train on the same examples.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from model.config_checks import require_positive

if TYPE_CHECKING:  # Type only: model.ssl_model does not need this module.
  from model.ssl_model import ModelSpec

__all__ = ["Segments", "SegmentPolicy", "make_segments", "training_segments",
           "batch_plan", "training_dataset"]


@dataclasses.dataclass(frozen=True)
class Segments:
  """Training examples cut from clips.

  Attributes:
    waveforms: float32 ``[num_segments, samples]``.
    clip_index: int ``[num_segments]``: the clip each segment came from.
    padded_clips: Clips shorter than a segment that were zero-padded.
    skipped_clips: Clips shorter than ``min_samples`` that were dropped.
  """

  waveforms: np.ndarray
  clip_index: np.ndarray
  padded_clips: int = 0
  skipped_clips: int = 0

  def __len__(self) -> int:
    return len(self.waveforms)

  def select(self, clips: Sequence[int]) -> "Segments":
    """The segments of the given clip indices (e.g. one federated client)."""
    mask = np.isin(self.clip_index, np.asarray(clips))
    return dataclasses.replace(self, waveforms=self.waveforms[mask],
                               clip_index=self.clip_index[mask])


def make_segments(waveforms: Sequence[np.ndarray], samples: int, *,
                  hop: int | None = None, min_samples: int = 0) -> Segments:
  """Cuts each clip into segments of ``samples`` samples.

  Args:
    waveforms: Decoded clips (1-D float32 at the front-end's sample rate).
    samples: Segment length ``S``.
    hop: Step between segment starts (default ``samples``: no overlap).
    min_samples: Clips shorter than this are skipped (counted); clips at least
      this long but shorter than ``samples`` become one zero-padded segment.

  Returns:
    The segments, in clip order.

  Raises:
    ValueError: No clip yields a segment (the message gives the lengths).
  """
  hop = hop or samples
  out, index = [], []
  padded = skipped = 0
  for i, wave in enumerate(waveforms):
    n = len(wave)
    if n < max(min_samples, 1):
      skipped += 1
      continue
    if n < samples:
      padded += 1
      out.append(np.pad(wave, (0, samples - n)))
      index.append(i)
      continue
    for start in range(0, n - samples + 1, hop):
      out.append(wave[start:start + samples])
      index.append(i)
  if skipped:
    logging.warning("make_segments: skipped %d of %d clips shorter than %d "
                    "samples", skipped, len(waveforms), min_samples)
  if not out:
    lengths = sorted(len(w) for w in waveforms)
    raise ValueError(
        f"make_segments: no clip yields a {samples}-sample segment (min "
        f"{min_samples}); clip lengths range {lengths[:1]}..{lengths[-1:]}")
  return Segments(waveforms=np.stack(out).astype(np.float32),
                  clip_index=np.asarray(index, np.int64),
                  padded_clips=padded, skipped_clips=skipped)


@dataclasses.dataclass(frozen=True)
class SegmentPolicy:
  """How clips are cut into training examples (one policy for every trainer).

  Windows of one example start every ``hop_patches`` patches; a clip shorter
  than an example but at least ``min_example_fraction`` of one becomes one
  zero-padded example; shorter clips are skipped.

  The defaults (hop half a patch, at least half an example) are the policy
  the federated simulation has used from the start, so its reported figures
  stand, and they are chosen for the small on-device corpora it models:

  * Half-patch hops give every clip as many examples as crops about 0.49 s
    apart allow (a CBoW example is five patches, 4.8 s: a 10 s clip gives
    11 windows, against 2 with a hop of one example). The price is host
    memory: the segments are one float32 array, about ``example /
    hop`` times the audio (10x for CBoW); pass a larger ``hop_patches`` for
    a corpus that does not fit.
  * Half an example bounds the padding: no example is more than half
    zeros, so silence never dominates what a task reconstructs or matches.
    The cost falls on the long tasks: a CBoW example is 4.8 s, so clips
    under 2.4 s are skipped (on the ``tiny`` corpus 36 of 54 clips, as many
    as it has keyword clips, leaving 81 examples from 18 clips; the former
    ``train_main`` policy, one patch minimum and no overlap, padded those 36
    to 4.8 s each, 54 examples in all). Short-example tasks keep every clip
    (triplet: 225 examples from all 54 clips, against 89).

  Attributes:
    hop_patches: Step between window starts, in patches
      (``FrontendConfig.patch_samples``); > 0.
    min_example_fraction: Shortest clip used, as a fraction of an example,
      in (0, 1] (1: no padding).
  """

  hop_patches: float = 0.5
  min_example_fraction: float = 0.5

  def __post_init__(self):
    require_positive(self, ("hop_patches",))
    if not 0 < self.min_example_fraction <= 1:
      raise ValueError(f"SegmentPolicy.min_example_fraction must be in "
                       f"(0, 1], got {self.min_example_fraction}")

  def hop_samples(self, patch_samples: int) -> int:
    """Samples between window starts (at least 1)."""
    return max(1, round(self.hop_patches * patch_samples))

  def min_samples(self, example_samples: int) -> int:
    """Shortest clip used, in samples."""
    return max(1, round(self.min_example_fraction * example_samples))


def training_segments(waveforms: Sequence[np.ndarray], spec: "ModelSpec",
                      policy: SegmentPolicy = SegmentPolicy()) -> Segments:
  """The training examples of ``spec``'s task, cut by ``policy``.

  Args:
    waveforms: Decoded clips at ``spec.frontend.sample_rate``.
    spec: The model: its example length (``spec.example_samples``) and patch
      length (``spec.frontend.patch_samples``); nothing is built.
    policy: The segmentation policy (default: the one every trainer uses).

  Returns:
    The segments, in clip order.

  Raises:
    ValueError: No clip yields a segment.
  """
  samples = spec.example_samples
  return make_segments(
      waveforms, samples,
      hop=policy.hop_samples(spec.frontend.patch_samples),
      min_samples=policy.min_samples(samples))


def batch_plan(num_examples: int, batch_size: int, *, seed: int,
               start_step: int, num_steps: int) -> np.ndarray:
  """Example indices of batches ``start_step .. start_step + num_steps - 1``.

  Each epoch is a fresh permutation seeded by ``(seed, epoch)``, so batch
  ``t`` depends only on ``(seed, t)``: a resumed run sees exactly the batches
  an uninterrupted run would have seen. A dataset smaller than one batch is
  cycled.

  Returns:
    int64 ``[num_steps, batch_size]``.
  """
  if num_examples <= 0:
    raise ValueError("batch_plan: no examples")
  first = start_step * batch_size
  last = (start_step + num_steps) * batch_size
  epochs = range(first // num_examples, -(-last // num_examples))
  order = np.concatenate([
      np.random.default_rng([seed, epoch]).permutation(num_examples)
      for epoch in epochs]) if num_steps else np.zeros(0, np.int64)
  offset = first - epochs.start * num_examples if num_steps else 0
  return order[offset:offset + num_steps * batch_size].reshape(
      num_steps, batch_size).astype(np.int64)


def training_dataset(waveforms: np.ndarray, batch_size: int, *, seed: int,
                     start_step: int = 0, num_steps: int) -> tf.data.Dataset:
  """Deterministic ``[batch_size, samples]`` batches for steps from ``start_step``.

  Batches have a static batch dimension (the SSL tasks and the exported
  models need one); batch ``t`` is the same whether or not the run was
  interrupted before it (see :func:`batch_plan`).

  Raises:
    ValueError: ``waveforms`` is empty.
  """
  if len(waveforms) == 0:
    raise ValueError("training_dataset: no waveforms")
  plan = batch_plan(len(waveforms), batch_size, seed=seed,
                    start_step=start_step, num_steps=num_steps)
  signature = tf.TensorSpec([batch_size, waveforms.shape[1]], tf.float32)
  return tf.data.Dataset.from_generator(
      lambda: (waveforms[indices] for indices in plan),
      output_signature=signature).prefetch(2)
