"""Log-mel front-end in TensorFlow ops (converts to TFLite builtins).

In the ``delegate`` formulation of :mod:`model.ops` (builtin exports) the
STFT magnitude is a two-stage DFT of matmuls that XNNPACK runs; elsewhere it
is ``tf.signal.stft`` (RFFT2D in TFLite). Both agree to float32 rounding.

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

from model import ops
from model.config_checks import require_positive

__all__ = ["FrontendConfig", "PatchShape", "log_mel", "dft_matrices",
           "frames_to_patches", "mel_matrix"]


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
  if ops.current_formulation() == "delegate":
    mel = _mel_by_matmul(waveform, config)
  else:
    stft = tf.signal.stft(
        waveform, frame_length=config.window_samples,
        frame_step=config.hop_samples, fft_length=config.fft_length,
        window_fn=tf.signal.hann_window, pad_end=False)
    magnitude = tf.abs(stft)
    mel = tf.tensordot(magnitude, tf.constant(mel_matrix(config)), axes=1)
  return tf.math.log(mel + config.log_offset)


def _split_fft_length(fft_length: int) -> int:
  """``n1``: the largest power of two <= sqrt(fft_length) dividing it."""
  n1 = 1
  while fft_length % (2 * n1) == 0 and (2 * n1) ** 2 <= fft_length:
    n1 *= 2
  return n1


@functools.lru_cache(maxsize=8)
def dft_matrices(config: FrontendConfig
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Constants of the matmul DFT front-end (float64 math, float32 result).

  With ``N = fft_length = n1 * n2`` and sample ``n = a + n1 * b``
  (``a < n1``), bin ``k = c + n2 * d`` (``c < n2``, ``d < n1``):
  ``X[k] = sum_a W_N^(a k) sum_b x[a + n1 b] W_n2^(b c)``. Stage 1 is the
  inner sum for ``c <= n2 / 2`` (real input; the other bins are mirror
  images), stage 2 the outer sum for each ``c``, twiddles folded in.

  Returns:
    ``stage1 [2 * (n2 / 2 + 1), taps]`` (cos rows, then -sin rows),
    ``stage2 [n2 / 2 + 1, 2 * n1, 2 * n1]`` (real form of the complex
    matrices, ``[re; im] -> [re | im]``) and ``mel [(n2 / 2 + 1) * n1,
    num_mel_bins]``: the filterbank rows of ``|X[k]|`` in ``(c, d)`` order,
    each bin ``<= N / 2`` taken once (mirror images ``N - k`` stand in).
  """
  fft_length = config.fft_length
  n1 = _split_fft_length(fft_length)
  n2 = fft_length // n1
  taps = -(-config.window_samples // n1)
  half = n2 // 2 + 1
  b, c = np.arange(taps)[None, :], np.arange(half)[:, None]
  angle = 2 * np.pi * b * c / n2
  stage1 = np.concatenate([np.cos(angle), -np.sin(angle)])
  a = np.arange(n1)[:, None]
  stage2 = np.zeros([half, 2 * n1, 2 * n1])
  for ci in range(half):
    k = ci + n2 * np.arange(n1)[None, :]
    phi = 2 * np.pi * a * k / fft_length  # [a, d]
    stage2[ci, :n1, :n1], stage2[ci, :n1, n1:] = np.cos(phi), -np.sin(phi)
    stage2[ci, n1:, :n1], stage2[ci, n1:, n1:] = np.sin(phi), np.cos(phi)
  filterbank = mel_matrix(config)
  mel = np.zeros([half * n1, filterbank.shape[1]])
  seen = set()
  for ci in range(half):
    for d in range(n1):
      k = ci + n2 * d
      folded = min(k, fft_length - k)
      if folded not in seen:
        seen.add(folded)
        mel[ci * n1 + d] = filterbank[folded]
  return (stage1.astype(np.float32), stage2.astype(np.float32),
          mel.astype(np.float32))


def _frames(waveform: tf.Tensor, config: FrontendConfig) -> tf.Tensor:
  """``tf.signal.frame`` of the window and hop, from slices where it can.

  With a static sample count the frames are ``ceil(window / hop)``
  hop-strided slices of the waveform reshaped to ``[..., rows, hop]``,
  concatenated: PAD, RESHAPE, STRIDED_SLICE and CONCATENATION, which
  XNNPACK runs. ``tf.signal.frame`` becomes GATHER and shape arithmetic under
  a dynamic batch, outside XNNPACK (measured 0.07 ms of a 0.29 ms front-end).
  """
  window, hop = config.window_samples, config.hop_samples
  samples = waveform.shape[-1]
  frames = config.num_frames(int(samples)) if samples is not None else 0
  if frames <= 0:
    return tf.signal.frame(waveform, window, hop)
  pieces = -(-window // hop)
  rows = frames + pieces - 1
  leading = [-1 if d is None else int(d) for d in waveform.shape[:-1]]
  used = min(int(samples), rows * hop)
  waveform = waveform[..., :used]
  if rows * hop > used:
    waveform = tf.pad(waveform, [[0, 0]] * len(leading)
                      + [[0, rows * hop - used]])
  hops = tf.reshape(waveform, leading + [rows, hop])
  return tf.concat([hops[..., j:j + frames, :min(hop, window - j * hop)]
                    for j in range(pieces)], axis=-1)


def _mel_by_matmul(waveform: tf.Tensor, config: FrontendConfig) -> tf.Tensor:
  """Mel energies of the STFT magnitude from matmuls (no RFFT2D).

  TFLite's RFFT2D is a reference kernel outside XNNPACK (about 4 us per
  512-point frame on x86); a two-stage DFT (Cooley-Tukey ``N = n1 * n2``)
  as FULLY_CONNECTED and BATCH_MATMUL with constant weights runs in
  XNNPACK. Same result as ``tf.signal.stft`` + ``abs`` + the filterbank up to
  float32 rounding.
  """
  window, fft_length = config.window_samples, config.fft_length
  n1 = _split_fft_length(fft_length)
  stage1, stage2, mel = dft_matrices(config)
  half, taps = stage2.shape[0], stage1.shape[1]
  frames = _frames(waveform, config)
  leading = [-1 if d is None else int(d) for d in frames.shape[:-1]]
  frames = frames * tf.signal.hann_window(window)
  if taps * n1 > window:
    frames = tf.pad(frames, [[0, 0]] * (len(frames.shape) - 1)
                    + [[0, taps * n1 - window]])
  # x[a + n1 * b] as [m, a, b]: stage 1 sums over b (the contiguous axis).
  x = tf.reshape(tf.transpose(tf.reshape(frames, [-1, taps, n1]), [0, 2, 1]),
                 [-1, taps])
  # Stage 1 with the frames as the matmul's right operand: [(re|im, c),
  # (m, a)]; then [c, m, (re|im, a)] (one TRANSPOSE) so that stage 2 is one
  # BATCH_MATMUL over c with the real form of its complex matrices, giving
  # [z_re | z_im] as [c, m, 2 * n1] (fewer, larger matmuls than re and im
  # apart, and no SLICE/SPLIT: int8 conversion keeps the front-end float by
  # tensor name, which misses SPLIT's outputs).
  y = tf.reshape(tf.matmul(tf.constant(stage1), x, transpose_b=True),
                 [2, half, -1, n1])
  y = tf.reshape(tf.transpose(y, [1, 2, 0, 3]), [half, -1, 2 * n1])
  z = tf.matmul(y, tf.constant(stage2))
  # re^2 + im^2 by a constant [2 * n1, n1] matmul.
  pair_sum = np.concatenate([np.eye(n1), np.eye(n1)]).astype(np.float32)
  power = tf.matmul(tf.reshape(z * z, [-1, 2 * n1]), tf.constant(pair_sum))
  magnitude = tf.sqrt(tf.reshape(power, [half, -1, n1]))  # [c, m, d]
  magnitude = tf.reshape(tf.transpose(magnitude, [1, 0, 2]),
                         [-1, half * n1])
  energies = tf.matmul(magnitude, tf.constant(mel))
  return tf.reshape(energies, leading + [int(mel.shape[1])])


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
