"""Log-mel front-end in TensorFlow ops (converts to TFLite builtins: RFFT2D).

The same function computes features for centralized training, for the
federated simulation and inside the exported ``.tflite`` models, so features
can never disagree between host and device.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from model.config_checks import require_positive

__all__ = ["FrontendConfig", "PatchShape", "log_mel", "frames_to_patches",
           "mel_matrix"]


class PatchShape(NamedTuple):
  """The shape of one log-mel patch: the encoder's input, ``[frames, bins]``."""

  frames: int
  bins: int


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
  """Parameters of the log-mel front-end (defaults follow the paper).

  The front-end is the one owner of the patch shape (:attr:`patch_shape`):
  the encoder's input shape, the tasks' slice lengths and the exported
  models' tensor shapes all derive from it.

  Attributes:
    sample_rate: Input sample rate in Hz (waveforms must already be at it).
    window_s: STFT window length in seconds (periodic Hann).
    hop_s: STFT hop in seconds.
    fft_length: FFT size.
    num_mel_bins: Mel bands.
    fmin: Lowest mel band edge in Hz.
    fmax: Highest mel band edge in Hz.
    log_offset: ``log(mel + log_offset)``.
    patch_frames: Frames per patch (96 frames = 0.96 s): the time axis of
      the encoder's input and of every slice the tasks cut.
  """

  sample_rate: int = 16000
  window_s: float = 0.025
  hop_s: float = 0.010
  fft_length: int = 512
  num_mel_bins: int = 64
  fmin: float = 125.0
  fmax: float = 7500.0
  log_offset: float = 1e-3
  patch_frames: int = 96

  def __post_init__(self):
    require_positive(self, ("sample_rate", "fft_length", "num_mel_bins",
                            "patch_frames"))
    if self.window_samples > self.fft_length:
      raise ValueError(f"FrontendConfig: window of {self.window_samples} samples "
                       f"exceeds fft_length {self.fft_length}")
    if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
      raise ValueError(f"FrontendConfig: need 0 <= fmin < fmax <= sample_rate/2, "
                       f"got fmin={self.fmin}, fmax={self.fmax}, "
                       f"sample_rate={self.sample_rate}")

  @property
  def window_samples(self) -> int:
    return int(round(self.window_s * self.sample_rate))

  @property
  def hop_samples(self) -> int:
    return int(round(self.hop_s * self.sample_rate))

  def num_frames(self, num_samples: int) -> int:
    """Frames produced by :func:`log_mel` for ``num_samples`` samples."""
    if num_samples < self.window_samples:
      return 0
    return 1 + (num_samples - self.window_samples) // self.hop_samples

  def samples_for_frames(self, num_frames: int) -> int:
    """Fewest samples that yield ``num_frames`` frames."""
    return self.window_samples + self.hop_samples * (num_frames - 1)

  @property
  def patch_shape(self) -> PatchShape:
    """``(patch_frames, num_mel_bins)``: one patch, the encoder's input."""
    return PatchShape(self.patch_frames, self.num_mel_bins)

  @property
  def patch_samples(self) -> int:
    """Samples of one patch (15600 for the defaults: 0.975 s)."""
    return self.samples_for_frames(self.patch_frames)


@functools.lru_cache(maxsize=8)
def mel_matrix(config: FrontendConfig) -> np.ndarray:
  """The [fft_length // 2 + 1, num_mel_bins] HTK mel filterbank (unnormalized).

  Built by ``librosa.filters.mel`` so that the reference features and the
  TF front-end share one filterbank definition.
  """
  import librosa  # Imported lazily: only needed when a graph is built.
  weights = librosa.filters.mel(
      sr=config.sample_rate, n_fft=config.fft_length,
      n_mels=config.num_mel_bins, fmin=config.fmin, fmax=config.fmax,
      htk=True, norm=None)
  return np.ascontiguousarray(weights.T.astype(np.float32))


def log_mel(waveform: tf.Tensor, config: FrontendConfig = FrontendConfig()
            ) -> tf.Tensor:
  """Waveform(s) -> log-mel spectrogram.

  Args:
    waveform: float32 ``[..., samples]`` at ``config.sample_rate``.
    config: Front-end parameters.

  Returns:
    float32 ``[..., frames, num_mel_bins]`` with
    ``frames = config.num_frames(samples)`` (no centre padding).
  """
  stft = tf.signal.stft(
      waveform, frame_length=config.window_samples,
      frame_step=config.hop_samples, fft_length=config.fft_length,
      window_fn=tf.signal.hann_window, pad_end=False)
  magnitude = tf.abs(stft)
  mel = tf.tensordot(magnitude, tf.constant(mel_matrix(config)), axes=1)
  return tf.math.log(mel + config.log_offset)


def frames_to_patches(features: tf.Tensor, patch_frames: int,
                      *, pad: bool = True) -> tf.Tensor:
  """Cuts ``[frames, bins]`` features into non-overlapping patches.

  Args:
    features: ``[frames, bins]`` log-mel of one clip.
    patch_frames: Frames per patch.
    pad: If true, a clip shorter than one patch, or a trailing remainder of at
      least half a patch, is padded with the clip's minimum value; otherwise
      the remainder is dropped.

  Returns:
    ``[num_patches, patch_frames, bins]`` (at least one patch when ``pad``).
  """
  frames = tf.shape(features)[0]
  full = frames // patch_frames
  remainder = frames - full * patch_frames
  if pad:
    keep_tail = tf.logical_or(full == 0, remainder * 2 >= patch_frames)
    target = tf.where(keep_tail, (full + 1) * patch_frames, full * patch_frames)
    fill = tf.reduce_min(features)
    padded = tf.concat(
        [features, tf.fill([tf.maximum(target - frames, 0),
                            tf.shape(features)[1]], fill)], axis=0)
    features = padded[:target]
  else:
    features = features[:full * patch_frames]
  return tf.reshape(features, [-1, patch_frames, features.shape[-1]])
