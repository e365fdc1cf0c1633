"""Audio decoding to mono float32 at a fixed rate, with errors that say why."""

from __future__ import annotations

import collections
import dataclasses
import os
import warnings

from absl import logging
import librosa
import numpy as np
import soundfile as sf
from tqdm import tqdm

from model.datasets.clips import ClipTable
from model.errors import UserError

__all__ = [
    "AudioDecodeError",
    "EmptyDatasetError",
    "ScanReport",
    "decode_clips",
    "load_audio",
    "load_waveforms",
    "scan_clips",
]

#: How many skip reasons an :class:`EmptyDatasetError` message quotes.
_REASONS_IN_ERROR = 5


class AudioDecodeError(ValueError, UserError):
  """An audio file could not be turned into a usable waveform.

  Attributes:
    path: The file.
    reason: Why, in words, starting with a one-word category followed by a
      colon (``"unreadable: ..."``, ``"empty: 0 samples"``,
      ``"non-finite: ..."``, ``"silent: rms 0 < 0.0001"``).
  """

  def __init__(self, path: str, reason: str):
    super().__init__(f"cannot use audio file {path!r}: {reason}")
    self.path = path
    self.reason = reason


class EmptyDatasetError(ValueError, UserError):
  """A dataset has no usable clip left after scanning."""


def _decode(path: str) -> tuple[np.ndarray, int]:
  """Decodes ``path`` to a ``(frames, channels)`` float32 array and its rate.

  Soundfile (libsndfile) is tried first; formats it cannot read go through
  ``librosa.load`` (audioread backends).

  Raises:
    AudioDecodeError: Neither decoder can read the file.
  """
  try:
    return sf.read(path, dtype="float32", always_2d=True)
  except sf.SoundFileError as sf_error:
    try:
      with warnings.catch_warnings():
        # librosa warns that it falls back to the deprecated audioread path.
        warnings.simplefilter("ignore")
        data, rate = librosa.load(path, sr=None, mono=False, dtype=np.float32)
    except Exception as error:  # audioread raises many unrelated types.
      fallback = ": ".join(filter(None, (type(error).__name__, str(error))))
      raise AudioDecodeError(
          path, f"unreadable: {sf_error} (librosa fallback: {fallback})"
      ) from error
    return np.atleast_2d(data).T, int(rate)


def load_audio(path: str, *, sample_rate: int = 16000,
               min_rms: float = 1e-4) -> np.ndarray:
  """Decodes an audio file to a mono float32 waveform at ``sample_rate``.

  Multichannel audio is averaged to mono; other rates are resampled with
  ``librosa.resample`` (soxr).

  Args:
    path: The audio file (any format libsndfile reads: WAV, FLAC, OGG, MP3,
      ...; others through librosa/audioread).
    sample_rate: Output sample rate in Hz.
    min_rms: Clips whose RMS (of the mono signal, full scale 1.0) is below this
      are rejected as silent.

  Returns:
    A 1-D float32 array of ``ceil(frames * sample_rate / file_rate)`` samples.

  Raises:
    AudioDecodeError: The file is missing, unreadable or corrupted, has 0
      samples, contains NaN/inf samples, or is silent.
    ValueError: ``sample_rate`` is not positive or ``min_rms`` is negative.
  """
  if sample_rate <= 0:
    raise ValueError(f"sample_rate must be positive, got {sample_rate}")
  if min_rms < 0:
    raise ValueError(f"min_rms must be >= 0, got {min_rms}")
  if not os.path.exists(path):
    raise AudioDecodeError(path, "missing: no such file")
  if os.path.isfile(path) and os.path.getsize(path) == 0:
    raise AudioDecodeError(path, "empty: file has 0 bytes")
  data, rate = _decode(path)
  if data.size == 0:
    raise AudioDecodeError(path, "empty: 0 samples")
  bad = np.count_nonzero(~np.isfinite(data))
  if bad:
    raise AudioDecodeError(
        path, f"non-finite: {bad} of {data.size} samples are NaN or inf")
  mono = data.mean(axis=1)
  rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
  if rms < min_rms:
    raise AudioDecodeError(path, f"silent: rms {rms:.3g} < {min_rms:g}")
  if rate != sample_rate:
    mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate)
  return np.ascontiguousarray(mono, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class ScanReport:
  """What :func:`scan_clips` kept and skipped.

  Attributes:
    total: Number of clips scanned.
    usable: Number of clips kept.
    skipped: ``(path, reason)`` of every skipped clip, in table order.
  """

  total: int
  usable: int
  skipped: tuple[tuple[str, str], ...] = ()

  def summary(self) -> str:
    """One line: counts, and skipped clips per reason category."""
    line = (f"{self.usable} of {self.total} clips usable, "
            f"{len(self.skipped)} skipped")
    if self.skipped:
      categories = collections.Counter(
          reason.split(":", 1)[0] for _, reason in self.skipped)
      counts = ", ".join(f"{name}: {count}"
                         for name, count in sorted(categories.items()))
      line += f" ({counts})"
    return line


def scan_clips(table: ClipTable, *, sample_rate: int = 16000,
               min_duration_s: float = 0.0,
               show_progress: bool = False) -> tuple[ClipTable, ScanReport]:
  """Decodes every clip, drops the unusable ones and fills ``duration_s``.

  Each skipped file is logged (absl warning) with its reason, followed by one
  summary line. Use :func:`decode_clips` to keep the decoded audio as well.

  Args:
    table: The clips to check.
    sample_rate: Rate the clips are decoded at (as in :func:`load_audio`).
    min_duration_s: Clips shorter than this (after decoding) are skipped.
    show_progress: Show a tqdm progress bar.

  Returns:
    The usable clips (same root and name, ``duration_s`` set from the decoded
    audio) and the report.

  Raises:
    EmptyDatasetError: No clip is usable; the message names the dataset and
      the first few reasons.
  """
  kept, _, report = _scan(table, sample_rate, min_duration_s, show_progress,
                          keep_audio=False)
  return kept, report


def decode_clips(table: ClipTable, *, sample_rate: int = 16000,
                 min_duration_s: float = 0.0, show_progress: bool = False
                 ) -> tuple[ClipTable, list[np.ndarray], ScanReport]:
  """:func:`scan_clips` that also returns the usable clips' waveforms.

  One decoding pass: use it when the audio fits in memory (it is needed next
  anyway); otherwise scan first and decode in chunks with
  :func:`load_waveforms`.

  Returns:
    The usable clips, one 1-D float32 waveform per usable clip, the report.

  Raises:
    EmptyDatasetError: No clip is usable.
  """
  return _scan(table, sample_rate, min_duration_s, show_progress,
               keep_audio=True)


def _scan(table: ClipTable, sample_rate: int, min_duration_s: float,
          show_progress: bool, *, keep_audio: bool
          ) -> tuple[ClipTable, list[np.ndarray], ScanReport]:
  kept, audio, skipped = [], [], []
  for clip in tqdm(table.clips, desc=f"scanning {table.name}", unit="clip",
                   disable=not show_progress):
    path = table.resolve(clip)
    try:
      waveform = load_audio(path, sample_rate=sample_rate)
    except AudioDecodeError as e:
      reason = e.reason
    else:
      duration = len(waveform) / sample_rate
      if duration >= min_duration_s:
        kept.append(dataclasses.replace(clip, duration_s=duration))
        if keep_audio:
          audio.append(waveform)
        continue
      reason = f"too short: {duration:.2f} s < {min_duration_s:.2f} s"
    logging.warning("%s: skipping %s: %s", table.name, path, reason)
    skipped.append((path, reason))
  report = ScanReport(total=len(table), usable=len(kept),
                      skipped=tuple(skipped))
  if skipped:
    logging.warning("%s: %s", table.name, report.summary())
  else:
    logging.info("%s: %s", table.name, report.summary())
  if not kept:
    if not skipped:
      raise EmptyDatasetError(f"dataset {table.name!r} has no clips "
                              f"(root {table.root!r})")
    reasons = "; ".join(f"{path}: {reason}"
                        for path, reason in skipped[:_REASONS_IN_ERROR])
    raise EmptyDatasetError(
        f"dataset {table.name!r}: none of its {len(table)} clips is usable "
        f"(root {table.root!r}); first reasons: {reasons}")
  return dataclasses.replace(table, clips=tuple(kept)), audio, report


def load_waveforms(table: ClipTable, *, sample_rate: int = 16000,
                   show_progress: bool = False) -> list[np.ndarray]:
  """Decodes every clip of a table, normally one from :func:`scan_clips`.

  Args:
    table: The clips.
    sample_rate: Output sample rate in Hz.
    show_progress: Show a tqdm progress bar.

  Returns:
    One 1-D float32 waveform per clip, in table order.

  Raises:
    AudioDecodeError: A clip cannot be used (the table was not scanned, or a
      file changed since).
  """
  return [load_audio(table.resolve(clip), sample_rate=sample_rate)
          for clip in tqdm(table.clips, desc=f"decoding {table.name}",
                           unit="clip", disable=not show_progress)]
