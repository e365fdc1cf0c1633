"""Corpus audio for verification, int8 calibration and probes."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np

from model.datasets.audio import decode_clips
from model.datasets.clips import ClipTable
from model.datasets.loaders import load_dataset
from model.datasets.pipeline import make_segments
from model.datasets.synthetic import CORPUS_PRESETS, generate_corpus
from model.features import FrontendConfig

__all__ = ["DEFAULT_CORPUS_PRESET", "Corpus", "default_corpus_dir",
           "load_corpus", "waveform_patches"]

#: Synthetic corpus generated when no corpus is given.
DEFAULT_CORPUS_PRESET = "tiny"


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Decoded clips.

  Attributes:
    table: The usable clips.
    waveforms: One 1-D float32 waveform per clip, in table order.
    source: Where the clips came from (for manifests and reports).
  """

  table: ClipTable
  waveforms: list[np.ndarray]
  source: str

  def segments(self, samples: int, count: int, *, min_samples: int,
               seed: int = 0) -> np.ndarray:
    """``count`` training examples of ``samples`` samples, ``[count, samples]``.

    Segments are cut from the clips (clips shorter than ``samples`` but at
    least ``min_samples`` long are zero-padded) and drawn without
    replacement where there are enough, in a seeded order.

    These are check inputs, not training data: the windows do not overlap
    (unlike :func:`model.datasets.pipeline.training_segments`), so a small
    batch holds distinct audio. With the training policy's overlapping
    windows, the export's few-step "train lowers the loss" check failed for
    the batch-statistics tasks (Barlow Twins, SimSiam) at small batches.
    """
    segments = make_segments(self.waveforms, samples,
                             min_samples=min_samples).waveforms
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(segments))
    if count > len(segments):
      order = np.concatenate([order, rng.choice(len(segments),
                                                count - len(segments))])
    return segments[order[:count]]

  def patches(self, frontend: FrontendConfig) -> tuple[np.ndarray, np.ndarray]:
    """Every clip's waveform patches (:func:`waveform_patches`) and owners.

    Returns:
      float32 ``[num_patches, patch_samples]`` and int64 ``[num_patches]``,
      the clip index of each patch (non-decreasing; every clip has one).
    """
    per_clip = [waveform_patches(w, frontend) for w in self.waveforms]
    owner = np.repeat(np.arange(len(per_clip)), [len(p) for p in per_clip])
    return np.concatenate(per_clip), owner


def waveform_patches(waveform: np.ndarray, frontend: FrontendConfig
                     ) -> np.ndarray:
  """Cuts a clip into the waveforms of its non-overlapping log-mel patches.

  Patch ``i`` starts at sample ``i * patch_frames * hop`` and has
  ``patch_samples`` samples, so its log-mel is exactly frames
  ``[i * patch_frames, (i + 1) * patch_frames)`` of the clip's. The clip is
  zero-padded to at least one patch, and a trailing remainder of at least
  half a patch becomes a zero-padded patch (as
  :func:`model.features.frames_to_patches` keeps it).

  Returns:
    float32 ``[num_patches, patch_samples]``.
  """
  stride = frontend.patch_frames * frontend.hop_samples
  frames = frontend.num_frames(len(waveform))
  count = max(1, frames // frontend.patch_frames
              + int(frames % frontend.patch_frames * 2
                    >= frontend.patch_frames))
  needed = (count - 1) * stride + frontend.patch_samples
  padded = np.pad(np.asarray(waveform, np.float32),
                  (0, max(0, needed - len(waveform))))
  return np.stack([padded[i * stride:i * stride + frontend.patch_samples]
                   for i in range(count)])


def default_corpus_dir() -> str:
  """Cache folder of the generated default corpus (``XDG_CACHE_HOME``)."""
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "ondevice-audio-ssl",
                      f"corpus-{DEFAULT_CORPUS_PRESET}")


def load_corpus(corpus_dir: Optional[str] = None, *, kind: str = "synthetic",
                sample_rate: int = 16000) -> Corpus:
  """Loads and decodes a corpus.

  Args:
    corpus_dir: Dataset folder (or CSV for ``kind="manifest"``); default:
      the tiny synthetic corpus, generated into :func:`default_corpus_dir`
      on first use.
    kind: Dataset layout, a key of ``model.datasets.loaders.DATASETS``.
    sample_rate: Decode to this rate.

  Raises:
    FileNotFoundError, ValueError: The corpus cannot be read (see
      ``model.datasets.loaders.load_dataset``).
  """
  if corpus_dir is None:
    corpus_dir = default_corpus_dir()
    generate_corpus(corpus_dir, CORPUS_PRESETS[DEFAULT_CORPUS_PRESET],
                    show_progress=False)
    kind = "synthetic"
  table, waveforms, _ = decode_clips(load_dataset(kind, corpus_dir),
                                     sample_rate=sample_rate)
  return Corpus(table=table, waveforms=waveforms,
                source=os.path.abspath(corpus_dir))
