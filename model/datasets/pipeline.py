"""Fixed-length training examples from decoded clips, and their tf.data input.

Every SSL task consumes waveforms of exactly ``S`` samples
(``SSLModel.example_samples``); this module cuts clips into such segments.
A clip shorter than ``S`` but at least one patch long is zero-padded; a clip
shorter than one patch is skipped and counted.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from absl import logging
import numpy as np
import tensorflow as tf

__all__ = ["Segments", "make_segments", "batch_plan", "training_dataset"]


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
